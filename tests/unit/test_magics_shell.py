"""The %ctr magics inside a real IPython InteractiveShell: loading, one-line errors, settings,
variable expansion, completion. No daemon: these paths fail before (or without) one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from ctr_magic.errors import CtrError, InvalidArgument, Unavailable
from ctr_magic.notebook.magics import CtrMagic
from ctr_magic.notebook.magics.completion import candidates, complete
from ctr_magic.notebook.magics.failure import CellFailure, redact


@pytest.fixture
def shell() -> Iterator[Any]:
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "ctr_magic")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "ctr_magic")
        ip.config.pop("CtrMagic", None)


def magic(ip: Any) -> CtrMagic:
    return next(c for c in ip.configurables if isinstance(c, CtrMagic))


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_failed_magic_fails_the_cell_with_one_line(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    result = shell.run_cell("%ctr run -v nonsense busybox")
    assert not result.success
    assert isinstance(result.error_in_exec, InvalidArgument)  # `except InvalidArgument` still works
    assert isinstance(result.error_in_exec, CellFailure)
    out = capsys.readouterr()
    shown = lines(out.out + out.err)
    assert len(shown) == 1, shown
    assert "InvalidArgument" in shown[0] and "%ctr run: volume 'nonsense' is not SRC:DST[:ro]" in shown[0]
    assert "Traceback" not in out.out + out.err


def test_run_all_stops_at_the_failed_cell(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # IPython runs the next cell only if this one succeeded (what a notebook's Run-All does).
    shell.user_ns["after"] = False
    cells = ["%ctr nosuch", "after = True"]
    for cell in cells:
        if not shell.run_cell(cell).success:
            break
    assert shell.user_ns["after"] is False
    capsys.readouterr()


def test_debug_shows_the_traceback(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    result = shell.run_cell("%ctr --debug run -v nonsense busybox")
    assert not result.success and not isinstance(result.error_in_exec, CellFailure)
    text = capsys.readouterr().out
    assert "Traceback" in text and "parse_volume" in text
    magic(shell).debug = True
    try:
        shell.run_cell("%ctr nosuch")
        assert "Traceback" in capsys.readouterr().out
    finally:
        magic(shell).debug = False


def test_unreachable_daemon_is_one_line_naming_the_socket(
    shell: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = tmp_path / "nothing.sock"
    shell.run_line_magic("config", f"CtrMagic.socket = {str(sock)!r}")
    result = shell.run_cell("%ctr version")
    assert isinstance(result.error_in_exec, Unavailable)
    shown = lines(capsys.readouterr().out)
    assert len(shown) == 1 and str(sock) in shown[0], shown


def test_help_does_not_fail(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert shell.run_cell("%ctr exec --help").success
    assert "usage: %ctr exec" in capsys.readouterr().out


def test_cell_body_only_where_accepted(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    result = shell.run_cell("%%ctr ps\nsomething\n")
    assert isinstance(result.error_in_exec, InvalidArgument)
    assert "takes no cell body" in capsys.readouterr().out


def test_config_traits_are_settable_and_listed(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_line_magic("config", "CtrMagic.namespace = 'nb-test'")
    shell.run_line_magic("config", "CtrMagic.progress = 'text'")
    m = magic(shell)
    assert m.namespace == "nb-test" and m.progress == "text"
    shell.run_line_magic("config", "CtrMagic")
    listing = capsys.readouterr().out
    for trait in ("backend", "socket", "namespace", "debug", "progress", "lock_file", "use_lock"):
        assert f"CtrMagic.{trait}" in listing
    with pytest.raises(Exception):  # noqa: B017  (traitlets' own validation error)
        m.progress = "fireworks"


def test_use_sets_the_same_traits(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert shell.run_cell("%ctr use containerd --socket /tmp/none.sock --namespace other").success
    m = magic(shell)
    assert (m.backend, m.socket, m.namespace) == ("containerd", "/tmp/none.sock", "other")
    assert "namespace other" in capsys.readouterr().out
    result = shell.run_cell("%ctr use --namespace 'bad ns'")
    assert isinstance(result.error_in_exec, InvalidArgument)
    assert m.namespace == "other"


def test_python_values_expand_in_lines(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    shell.user_ns["spec"] = "nonsense"
    shell.run_cell("%ctr run -v {spec} busybox")
    assert "volume 'nonsense'" in capsys.readouterr().out
    shell.user_ns["other"] = "alsobad"
    shell.run_cell("%ctr run -v $other busybox")
    assert "volume 'alsobad'" in capsys.readouterr().out


def test_failures_keep_secrets_out() -> None:
    assert redact("https://me:hunter2@reg.example/v2/") == "https://***@reg.example/v2/"
    assert redact("env DB_PASSWORD=hunter2 API_TOKEN=abc X=1") == "env DB_PASSWORD=*** API_TOKEN=*** X=1"


def test_secret_from_kernel_env_never_echoed(shell: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    monkeypatch.setenv("MY_TOKEN", "hunter2")
    shell.run_line_magic("config", "CtrMagic.socket = '/nonexistent/ctr.sock'")
    shell.run_cell("%ctr run -e MY_TOKEN -v bad busybox")
    out = capsys.readouterr()
    assert "hunter2" not in out.out + out.err


def test_unexpected_errors_are_one_line_too(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # A bug inside ctr-magic is something no daemon can produce: a broken settings hook stands in for one.
    m = magic(shell)
    original = m.session.settings

    def broken() -> Any:
        raise RuntimeError("boom\nsecond line")

    m.session.settings = broken
    try:
        result = shell.run_cell("%ctr ps")
    finally:
        m.session.settings = original
    assert type(result.error_in_exec) is CellFailure
    shown = lines(capsys.readouterr().out)
    assert len(shown) == 1 and "RuntimeError: boom …" in shown[0] and "--debug" in shown[0]


def test_keyboard_interrupt_becomes_a_one_line_interrupted(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # An interrupt arriving while the session connects; the daemon side is covered in the integration tests.
    m = magic(shell)
    original = m.session.settings

    def interrupted() -> Any:
        raise KeyboardInterrupt

    m.session.settings = interrupted
    try:
        result = shell.run_cell("%ctr ps")
    finally:
        m.session.settings = original
    assert isinstance(result.error_in_exec, CtrError)
    assert type(result.error_in_exec).__name__ == "Interrupted"
    assert lines(capsys.readouterr().out) == ["\x1b[0;31mInterrupted\x1b[0m: %ctr ps: interrupted"]


def test_completion_of_commands_and_options(shell: Any) -> None:
    assert candidates(["r"]) == ["rm", "rmi", "run"]
    assert candidates(["net", ""]) == ["down", "up"]
    assert "--rm" in candidates(["run", "--r"])
    assert candidates(["exec", "box", "--", ""]) == []
    event = SimpleNamespace(line="%ctr pu", symbol="pu", command="%ctr", text_until_cursor="%ctr pu")
    assert complete(shell, event) == ["pull", "push"]
    from IPython.core.completer import provisionalcompleter

    with provisionalcompleter():
        completions = {c.text for c in shell.Completer.completions("%ctr pu", 7)}
    assert {"pull", "push"} <= completions


def test_unload_removes_magic_and_settings(shell: Any) -> None:
    shell.run_line_magic("unload_ext", "ctr_magic")
    try:
        assert "ctr" not in shell.magics_manager.magics["line"]
        assert not any(isinstance(c, CtrMagic) for c in shell.configurables)
    finally:
        shell.run_line_magic("load_ext", "ctr_magic")
    assert "ctr" in shell.magics_manager.magics["line"]


def test_load_ext_imports_nothing_heavy() -> None:
    code = (
        "import sys; from IPython.core.interactiveshell import InteractiveShell;"
        "ip = InteractiveShell.instance(); ip.run_line_magic('load_ext', 'ctr_magic');"
        "heavy = [m for m in ('pandas', 'ipywidgets', 'grpc', 'httpx', 'ctr_magic.containerd.client') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_question_mark_shows_the_generated_help(shell: Any) -> None:
    from IPython.core.oinspect import getdoc

    from ctr_magic.notebook.magics import parsing

    doc = getdoc(shell.find_line_magic("ctr"))
    assert doc is not None and doc.startswith("usage: %ctr")
    for words in parsing.commands():
        assert f"\n    {words[0]}" in doc, words  # every command and group is listed, ns included


def test_help_overview_follows_the_declaring_modules() -> None:
    from ctr_magic.notebook.magics import parsing

    text = parsing.help_text()
    listed = [line.split()[0] for line in text.splitlines() if line.startswith("    ") and not line.startswith("     ")]
    assert listed.index("use") < listed.index("pull") < listed.index("run") < listed.index("exec")
    assert listed.index("exec") < listed.index("snapshots") < listed.index("net")
