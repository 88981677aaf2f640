"""%ctr magics in a real IPython shell against the private containerd (and its registry)."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from cell_support import Tee
from IPython.core.interactiveshell import InteractiveShell
from tasks_support import wait_for
from traitlets.config import Config

from ctr_magic.errors import CtrError, Interrupted, InvalidArgument, NotFound
from ctr_magic.notebook.magics import CtrMagic
from ctr_magic.notebook.magics.failure import CellFailure
from ctr_magic.types import DeleteContainerOptions


@pytest.fixture
def shell(environment: Any, namespace: str, service: Any, monkeypatch: pytest.MonkeyPatch,
          tmp_path: Any) -> Iterator[Any]:
    monkeypatch.setenv("CTR_MAGIC_HOME", environment.base_dir)
    monkeypatch.chdir(tmp_path)  # lock files land here
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "ctr_magic")
    ip.run_line_magic("config", f"CtrMagic.socket = {environment.containerd_socket!r}")
    ip.run_line_magic("config", f"CtrMagic.namespace = {namespace!r}")
    ip.run_line_magic("config", "CtrMagic.progress = 'none'")
    before = {c.id for c in service.list_containers()}
    images_before = {i.name for i in service.list_images()}
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "ctr_magic")  # unmounts what the session mounted
        ip.config.pop("CtrMagic", None)
        made = [c.id for c in service.list_containers() if c.id not in before]
        for container_id in made:
            service.delete_container(container_id, DeleteContainerOptions(cleanup_snapshot=True, force=True))
        for version in reversed(service.list_checkpoints()):  # newest first: versions build on each other
            service.remove_snapshot(service.snapshotter, version.name)
        for image in service.list_images():
            if image.name not in images_before and "/ctr-magic-test/" in image.name:
                service.delete_image(image.name)


def run(ip: Any, cell: str, *, stdout: Tee | None = None, stderr: Tee | None = None) -> tuple[Any, str, str]:
    """Run a cell with stdout/stderr recorded; returns (result, stdout text, stderr text)."""
    out, err = stdout or Tee(), stderr or Tee()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        result = ip.run_cell(cell)
    finally:
        sys.stdout, sys.stderr = saved
    return result, out.text, err.text


def ok(ip: Any, cell: str) -> str:
    result, out, err = run(ip, cell)
    assert result.success, out + err
    return out


def one_line_failure(result: Any, out: str, kind: type[BaseException]) -> str:
    assert not result.success
    assert isinstance(result.error_in_exec, CellFailure) and isinstance(result.error_in_exec, kind)
    shown = [line for line in out.splitlines() if line.strip()]
    assert len(shown) == 1, shown
    return shown[0]


def test_pull_and_images_dataframe(shell: Any, test_images: dict[str, str]) -> None:
    ref = test_images["layers"]
    out = ok(shell, f"%ctr pull {ref}")
    assert f"pulled {ref} sha256:" in out
    ok(shell, "df = %ctr images ctr-magic/layers")
    df = shell.user_ns["df"]
    assert isinstance(df, pd.DataFrame) and list(df["name"]) == [ref]
    assert str(df["size"].dtype) == "Int64" and df["size"].iloc[0] > 100_000
    assert isinstance(df["created"].dtype, pd.DatetimeTZDtype)
    assert df["digest"].iloc[0].startswith("sha256:")
    assert "MB" in repr(df[["name", "size"]])


def test_run_foreground_streams_and_removes(shell: Any, service: Any, test_images: dict[str, str]) -> None:
    ref = test_images["busybox"]
    result, out, err = run(shell, f"%ctr run --rm --name fg-rm {ref} -- sh -c 'echo hello; echo oops >&2; exit 3'")
    assert result.success  # a non-zero exit is reported, not raised, without --check
    assert "hello\n" in out and "oops" not in out  # the container's stderr stays on the cell's stderr
    assert "oops\n" in err
    assert "fg-rm exited with code 3" in err
    assert "fg-rm" not in {c.id for c in service.list_containers()}
    result, out, _ = run(shell, f"%ctr run --rm --check --name fg-check {ref} -- false")
    assert "fg-check exited with code 1" in one_line_failure(result, out, CtrError)
    assert "fg-check" not in {c.id for c in service.list_containers()}


def test_run_output_arrives_before_the_container_exits(shell: Any, service: Any,
                                                       test_images: dict[str, str]) -> None:
    script = ("echo waiting; i=0; while [ ! -f /tmp/go ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; "
              "[ -f /tmp/go ] && echo released || echo timeout")  # fmt: skip
    released = threading.Event()

    def on_write(text: str) -> None:
        if "waiting" in text and not released.is_set():
            released.set()
            from ctr_magic.types import ExecTaskRequest

            threading.Thread(target=service.exec_task, args=("fg-live", ExecTaskRequest(args=["touch", "/tmp/go"]))
                             ).start()  # fmt: skip

    result, out, _ = run(shell, f"%ctr run --rm --name fg-live {test_images['busybox']} -- sh -c '{script}'",
                         stdout=Tee(on_write))
    assert result.success
    assert "waiting\nreleased\n" in out, out


def test_run_interrupt_kills_and_removes(shell: Any, service: Any, test_images: dict[str, str]) -> None:
    import _thread

    def on_write(text: str) -> None:
        if "running" in text:
            _thread.interrupt_main()

    result, out, _ = run(shell, f"%ctr run --rm --name fg-int {test_images['busybox']} -- sh -c 'echo running; "
                                "exec sleep 77'", stdout=Tee(on_write))  # fmt: skip
    line = one_line_failure(result, out.replace("running\n", ""), Interrupted)
    assert "interrupted: killed fg-int and removed it" in line
    assert "fg-int" not in {c.id for c in service.list_containers()}
    assert "fg-int" not in {t.container_id for t in service.list_tasks()}


@pytest.fixture
def box(shell: Any, test_images: dict[str, str]) -> str:
    ok(shell, f"%ctr run -d --name box-{os.getpid()} {test_images['busybox']} -- sh -c 'echo booted; sleep 600'")
    return f"box-{os.getpid()}"


def test_exec_output_arrives_before_the_process_ends(shell: Any, service: Any, box: str) -> None:
    script = ("echo ready; echo warn >&2; i=0; while [ ! -f /tmp/go ] && [ $i -lt 300 ]; do sleep 0.05; "
              "i=$((i+1)); done; [ -f /tmp/go ] && echo released || echo timeout")  # fmt: skip
    seen = threading.Event()

    def on_write(text: str) -> None:
        if "ready" in text and not seen.is_set():
            seen.set()
            from ctr_magic.types import ExecTaskRequest

            threading.Thread(target=service.exec_task, args=(box, ExecTaskRequest(args=["touch", "/tmp/go"]))).start()

    result, out, err = run(shell, f"%ctr exec {box} -- sh -c '{script}'", stdout=Tee(on_write))
    assert result.success
    assert out == "ready\nreleased\n"
    assert err == "warn\n"  # stderr goes to the cell's stderr (red in Jupyter), apart from stdout


def test_exec_variables_stdin_and_exit_codes(shell: Any, box: str) -> None:
    ok(shell, f"%ctr exec -o text {box} -- cat /etc/group")
    assert shell.user_ns["text"].startswith("root:x:0:")
    ok(shell, f"%ctr exec -o raw --binary {box} -- printf 'a\\000b'")
    assert shell.user_ns["raw"] == b"a\x00b"
    shell.user_ns["payload"] = "three words here\n"
    assert ok(shell, f"%ctr exec --stdin payload {box} -- wc -w").strip() == "3"
    shell.user_ns["blob"] = bytes(range(256)) * 100
    ok(shell, f"%ctr exec --stdin blob -o back --binary {box} -- cat")
    assert shell.user_ns["back"] == shell.user_ns["blob"]
    body = "import_me = 1\necho from the cell body\n"
    out = ok(shell, f"%%ctr exec {box} -- sh -c 'grep echo | sh'\n{body}")
    assert out == "from the cell body\n"
    result, out, err = run(shell, f"%ctr exec {box} -- sh -c 'exit 4'")
    assert result.success and out == "" and f"`sh -c 'exit 4'` in {box} exited with code 4" in err
    result, out, _ = run(shell, f"%ctr exec --check {box} -- sh -c 'exit 4'")
    line = one_line_failure(result, out, CtrError)
    assert "exited with code 4" in line and result.error_in_exec.exit_code == 4
    # {var} and $var expansion
    shell.user_ns["word"] = "expanded"
    assert ok(shell, f"%ctr exec {box} -- echo {{word}} $word") == "expanded expanded\n"


def test_exec_interrupt_kills_the_process(shell: Any, service: Any, box: str) -> None:
    import _thread

    def on_write(text: str) -> None:
        if "sleeping" in text:
            _thread.interrupt_main()

    result, out, _ = run(shell, f"%ctr exec {box} -- sh -c 'echo sleeping; exec sleep 77'", stdout=Tee(on_write))
    line = one_line_failure(result, out.replace("sleeping\n", ""), Interrupted)
    assert "interrupted: killed" in line
    procs = ok(shell, f"%ctr exec {box} -- ps")
    assert "sleep 77" not in procs
    tasks = service.list_tasks()
    assert next(t for t in tasks if t.container_id == box).status.name == "RUNNING"


def test_ps_tasks_logs_inspect_stop_rm(shell: Any, box: str) -> None:
    ok(shell, "ps = %ctr ps")
    ps = shell.user_ns["ps"]
    row = ps[ps["id"] == box].iloc[0]
    assert row["status"] == "running" and row["pid"] > 0
    assert isinstance(ps["status"].dtype, pd.CategoricalDtype)
    ok(shell, "t = %ctr tasks")
    assert box in list(shell.user_ns["t"]["container"])
    # The container may not have run its `echo` yet when the test gets here: poll, with a deadline.
    wait_for(lambda: "booted" in ok(shell, f"%ctr logs {box}"), what="the container's first log line")
    ok(shell, f"info = %ctr inspect {box}")
    assert shell.user_ns["info"]["kind"] == "container" and shell.user_ns["info"]["task"]["status"] == "running"
    assert ok(shell, f"%ctr stop -t 1 --force {box}") == f"stopped {box}\n"
    ok(shell, "ps = %ctr ps")
    assert box not in list(shell.user_ns["ps"]["id"])
    ok(shell, "ps = %ctr ps -a")
    stopped = shell.user_ns["ps"].set_index("id").loc[box]
    assert stopped["status"] == "stopped" and stopped["exit_code"] == 137
    assert ok(shell, f"%ctr rm {box}") == f"removed {box}\n"


def test_label_filter_and_start_again(shell: Any, test_images: dict[str, str]) -> None:
    ref = test_images["busybox"]
    ok(shell, f"%ctr create --name lab-a --label team=x {ref} -- sh -c 'echo run; sleep 600'")
    ok(shell, f"%ctr create --name lab-b --label team=y {ref}")
    ok(shell, "mine = %ctr ps -a --label team=x")
    assert list(shell.user_ns["mine"]["id"]) == ["lab-a"]
    assert list(shell.user_ns["mine"]["status"]) == ["none"]
    ok(shell, "%ctr start lab-a")
    ok(shell, "%ctr kill lab-a -s KILL")
    ok(shell, "%ctr rm -f lab-a lab-b")


def test_bad_input_is_one_line_and_creates_nothing(shell: Any, service: Any, registry: str,
                                                  test_images: dict[str, str]) -> None:
    containers = {c.id for c in service.list_containers()}
    images = {i.name for i in service.list_images()}
    cases = [
        ("%ctr exec nope-nope -- true", NotFound, "nope-nope"),
        ("%ctr logs nope-nope", NotFound, "nope-nope"),
        ("%ctr stop nope-nope", NotFound, "nope-nope"),
        ("%ctr rm nope-nope", NotFound, "nope-nope"),
        (f"%ctr run --rm --name bad-ref {registry}/ctr-magic/not-there:1 -- true", NotFound, "not-there"),
        (f"%ctr run --name bad-vol -v /no/such/dir:/data {test_images['busybox']}", InvalidArgument, "/no/such/dir"),
        (f"%ctr run --name bad-cmd {test_images['busybox']} -- /no/such/binary", CtrError, "/no/such/binary"),
    ]
    for cell, kind, needle in cases:
        result, out, _ = run(shell, cell)
        assert needle in one_line_failure(result, out, kind), cell
    assert {c.id for c in service.list_containers()} == containers
    assert {i.name for i in service.list_images()} <= images | {test_images["busybox"]}


def test_lock_pins_pulls_to_digests(shell: Any, test_images: dict[str, str], tmp_path: Any) -> None:
    ref = test_images["config"]
    ok(shell, f"%ctr pull {ref}")
    assert "1 image(s) pinned" in ok(shell, "%ctr lock")
    doc = json.loads((tmp_path / "ctr-lock.json").read_text())
    digest = doc["images"][ref]
    assert digest.startswith("sha256:")
    out = ok(shell, f"%ctr pull {ref}")
    assert f"locked: {ref} -> {digest[:19]}" in out
    assert f"@{digest}" in out
    out = ok(shell, f"%ctr run --rm {ref}")
    assert "locked:" in out and "hello from config" in out
    assert ok(shell, "%ctr lock --delete").startswith("deleted")
    assert "locked" not in ok(shell, f"%ctr pull {ref}")


def test_up_reuses_the_running_environment_and_down_leaves_it(shell: Any, environment: Any) -> None:
    ok(shell, "env = %ctr up")
    assert shell.user_ns["env"].containerd_socket == environment.containerd_socket
    out = ok(shell, "%ctr down")
    assert "leaving the environment" in out
    assert ok(shell, "%ctr version").startswith("containerd ")


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def test_mount_checkpoint_versions_and_commit(shell: Any, service: Any, registry: str,
                                              test_images: dict[str, str]) -> None:
    ref = test_images["busybox"]
    ok(shell, f"%ctr run -d --name snap-box {ref} -- sleep 600")
    ok(shell, "%ctr exec snap-box -- sh -c 'echo A > /state'")
    ok(shell, "path = %ctr mount snap-box")
    path = shell.user_ns["path"]
    assert Path(path, "state").read_text() == "A\n" and _mounted(path)
    assert ok(shell, "%ctr umount snap-box") == "unmounted snap-box\n"
    assert not _mounted(path) and not os.path.exists(path)
    ok(shell, "%ctr stop --force -t 1 snap-box")
    assert "saved checkpoint snap-box@v1" in ok(shell, "%ctr checkpoint snap-box v1")
    ok(shell, "%ctr start snap-box")
    ok(shell, "%ctr exec snap-box -- sh -c 'cat /state; echo B > /state'")
    ok(shell, "%ctr stop --force -t 1 snap-box")
    ok(shell, "%ctr checkpoint snap-box v2")
    result, out, _ = run(shell, "%ctr checkpoint snap-box v2")
    assert "already exists" in one_line_failure(result, out, CtrError)
    ok(shell, "versions = %ctr checkpoints snap-box")
    assert list(shell.user_ns["versions"]["version"]) == ["v1", "v2"]
    assert ok(shell, f"%ctr run --rm --from snap-box@v1 {ref} -- cat /state") == "A\n"
    assert ok(shell, f"%ctr run --rm --from snap-box@v2 {ref} -- cat /state") == "B\n"
    image = f"{registry}/ctr-magic-test/state:1"
    assert f"committed snap-box as {image}" in ok(shell, f"%ctr commit snap-box {image} -m 'state B'")
    assert ok(shell, f"%ctr run --rm {image} -- cat /state").endswith("B\n")
    result, out, _ = run(shell, "%ctr checkpoint --rm snap-box v1")
    assert "snap-box@v2 is built on it" in one_line_failure(result, out, CtrError)
    ok(shell, "%ctr rm snap-box")
    assert ok(shell, "%ctr checkpoint --rm snap-box v2") == "removed checkpoint snap-box@v2\n"
    ok(shell, "versions = %ctr checkpoints snap-box")
    assert list(shell.user_ns["versions"]["version"]) == ["v1"]


def test_mount_is_undone_when_the_extension_unloads(shell: Any, test_images: dict[str, str]) -> None:
    ok(shell, f"%ctr create --name mnt-box {test_images['busybox']}")
    ok(shell, "ro = %ctr mount --ro mnt-box")
    path = shell.user_ns["ro"]
    assert os.path.isfile(os.path.join(path, "bin", "busybox")) and _mounted(path)
    shell.run_line_magic("unload_ext", "ctr_magic")
    assert not _mounted(path)
    shell.run_line_magic("load_ext", "ctr_magic")


def test_network_up_and_down(shell: Any, test_images: dict[str, str], tmp_path: Any) -> None:
    # A bridge and subnet of this test's own (CtrMagic.cni_conf_dir), removed at the end.
    import secrets
    import subprocess

    from ctr_magic.containerd.network import write_default_network_config

    bridge = f"cmm{secrets.token_hex(3)}"
    conf_dir = tmp_path / "net.d"
    write_default_network_config(str(conf_dir), name=bridge, bridge=bridge, subnet="10.213.250.0/24",
                                 ipam_data_dir=str(tmp_path / "ipam"))
    ok(shell, f"%config CtrMagic.cni_conf_dir = {str(conf_dir)!r}")
    try:
        _network_up_and_down(shell, test_images)
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


def _network_up_and_down(shell: Any, test_images: dict[str, str]) -> None:
    out = ok(shell, f"%ctr run -d --net --name net-box {test_images['busybox']} -- sleep 600")
    assert "net-box is on the bridge network at " in out
    ip = out.split(" at ")[1].split()[0]
    assert ip.startswith("10.213.250."), ip  # the test's own network, not the default one
    ok(shell, "ps = %ctr ps")
    assert shell.user_ns["ps"].set_index("id").loc["net-box", "ip"] == ip
    assert ok(shell, "%ctr net down net-box") == "net-box left the bridge network\n"
    assert ok(shell, "%ctr rm -f net-box") == "removed net-box\n"


def test_tag_push_export_import(shell: Any, service: Any, registry: str, test_images: dict[str, str],
                                tmp_path: Any) -> None:
    ref = test_images["busybox"]
    copy = f"{registry}/ctr-magic-test/copy:1"
    ok(shell, f"%ctr pull {ref}")
    assert ok(shell, f"%ctr tag {ref} {copy}") == f"tagged {ref} as {copy}\n"
    out = ok(shell, f"%ctr push {copy}")
    assert out.startswith(f"pushed {copy} sha256:")
    archive = tmp_path / "copy.tar"
    ok(shell, f"%ctr export {archive} {copy}")
    assert archive.stat().st_size > 100_000
    ok(shell, f"%ctr rmi {copy}")
    assert copy not in {i.name for i in service.list_images()}
    ok(shell, f"back = %ctr import {archive}")
    assert list(shell.user_ns["back"]["name"]) == [copy]
    ok(shell, f"%ctr rmi {copy}")
    out = ok(shell, f"%ctr pull {copy}")  # from the registry, where push put it
    assert out.startswith(f"pulled {copy} sha256:")
    result, out, _ = run(shell, f"%ctr rmi {copy} {registry}/ctr-magic-test/never:1")
    assert "never" in one_line_failure(result, out, NotFound)
    assert copy in {i.name for i in service.list_images()}  # all names are checked before any is deleted
    ok(shell, f"%ctr rmi {copy}")


def test_tab_completion_offers_containers_and_images(shell: Any, box: str, test_images: dict[str, str]) -> None:
    from IPython.core.completer import provisionalcompleter

    def completions(line: str) -> set[str]:
        with provisionalcompleter():
            return {c.text for c in shell.Completer.completions(line, len(line))}

    magic = next(c for c in shell.configurables if isinstance(c, CtrMagic))
    magic.session.completion_cache.clear()
    assert box in completions("%ctr exec box-")
    assert box in completions("%ctr stop ")
    ok(shell, f"%ctr pull {test_images['config']}")
    magic.session.completion_cache.clear()
    image = test_images["config"]
    typed = image[: image.index("/") + 5]  # "127.0.0.1:PORT/ctr-"
    found = completions(f"%ctr run {typed}")
    assert any(image.endswith(c) for c in found), found


def test_namespaces_listed_and_an_empty_one_removed(shell: Any, namespace: str, ctr: Any) -> None:
    spare = f"{namespace}-spare"
    ctr("snapshots", "prepare", "keep", namespace=spare)  # creates the namespace, with something in it
    names = ok(shell, "names = %ctr ns ls")
    assert f"* {namespace}" in names and spare in shell.user_ns["names"]
    # A namespace that still holds a snapshot is refused: one line, and it stays.
    result, out, _ = run(shell, f"%ctr ns rm {spare}")
    assert spare in one_line_failure(result, out, CtrError)
    assert spare in ok(shell, "%ctr ns ls")
    ctr("snapshots", "rm", "keep", namespace=spare)
    assert ok(shell, f"%ctr ns rm {spare}").strip() == f"deleted namespace {spare}"
    assert spare not in ok(shell, "%ctr ns ls")


def test_cp_both_ways_with_progress_for_a_large_copy(shell: Any, box: str, tmp_path: Any) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    big = os.urandom(20 << 20)
    (data / "sub" / "big.bin").write_bytes(big)
    (data / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (data / "run.sh").chmod(0o750)
    ok(shell, "%config CtrMagic.progress = 'text'")
    result, out, err = run(shell, f"%ctr cp ./data {box}:/tmp/")
    assert result.success, out + err
    assert f"copied ./data to {box}:/tmp/ (" in out
    assert f"cp ./data {box}:/tmp/:" in err and "MB" in err  # the progress line of a copy over 16 MB
    assert ok(shell, f"%ctr exec {box} -- /tmp/data/run.sh") == "hi\n"
    result, out, err = run(shell, f"%ctr cp {box}:/tmp/data ./back")
    assert result.success, out + err
    assert (tmp_path / "back" / "sub" / "big.bin").read_bytes() == big
    assert oct((tmp_path / "back" / "run.sh").stat().st_mode & 0o777) == "0o750"
    result, out, _ = run(shell, f"%ctr cp {box}:/nope ./nope")
    assert "/nope does not exist in container" in one_line_failure(result, out, NotFound)
    assert not (tmp_path / "nope").exists()
    result, out, _ = run(shell, "%ctr cp ./a ./b")
    assert "name the container on one side" in one_line_failure(result, out, InvalidArgument)


def test_a_foreground_run_keeps_its_output_for_logs(shell: Any, test_images: dict[str, str]) -> None:
    result, out, err = run(shell, f"%ctr run --name fg-log {test_images['busybox']} -- sh -c 'echo kept; "
                                  "echo kept-err >&2'")  # fmt: skip
    assert result.success and out.endswith("kept\n") and err == "kept-err\n", (out, err)
    logged = ok(shell, "%ctr logs fg-log")
    assert "kept\n" in logged and "kept-err\n" in logged
