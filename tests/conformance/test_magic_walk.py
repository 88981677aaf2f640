"""Every `%ctr` subcommand on every backend: it works, or it fails the cell with one `NotSupported` line.

Runs each command through a real IPython shell whose session talks to the backend under test.
The outcome of each (command, backend) is checked against the declared feature table: a command
refused with NotSupported must need a feature (or capability) its backend is declared without.
A command another module adds later and this table does not know is run with ``--help`` and
listed, so the walk never silently forgets one: add a line for it below.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from ctr_magic import capabilities, errors
from ctr_magic.env import EnvironmentInfo
from ctr_magic.features import FEATURES
from ctr_magic.notebook.magics import parsing
from ctr_magic.notebook.magics.failure import CellFailure

from .conftest import RUN_ID, Backend

#: In order: each line may use {img} (busybox), {reg} (registry), {box} (a container the walk made), {tmp}, {be}.
WALK: tuple[tuple[str, str], ...] = (
    ("use", "%ctr use"),
    ("status", "%ctr status"),
    ("up", "%ctr up"),
    ("version", "%ctr version"),
    ("pull", "%ctr pull -q {img}"),
    ("images", "%ctr images busybox"),
    ("tag", "%ctr tag {img} {reg}/ctr-magic-test/walk-{be}-{run}:v1"),
    ("push", "%ctr push -q {img} --dest {reg}/ctr-magic-test/walk-push-{be}-{run}:v1"),
    ("export", "%ctr export {tmp}/walk.tar {img}"),
    ("import", "%ctr import {tmp}/walk.tar"),
    ("rmi", "%ctr rmi {reg}/ctr-magic-test/walk-{be}-{run}:v1"),
    ("create", "%ctr create --label walk=yes --name {box} {img} -- sleep 600"),
    ("start", "%ctr start {box}"),
    ("exec", "%ctr exec {box} -- true"),
    ("cp", "%ctr cp {tmp}/walk.txt {box}:/tmp/"),
    ("commit", "%ctr commit {box} {reg}/ctr-magic-test/walk-commit-{be}-{run}:v1"),
    ("ps", "%ctr ps -a --labels"),
    ("tasks", "%ctr tasks"),
    ("inspect", "%ctr inspect {box}"),
    ("logs", "%ctr logs {box}"),
    ("net up", "%ctr net up {box}"),
    ("net down", "%ctr net down {box}"),
    ("kill", "%ctr kill -s KILL {box}"),
    ("stop", "%ctr stop {box}"),
    ("checkpoint", "%ctr checkpoint {box} v1"),
    ("checkpoints", "%ctr checkpoints {box}"),
    ("snapshots", "%ctr snapshots"),
    ("mount", "%ctr mount --ro {box}"),
    ("umount", "%ctr umount --all"),
    ("run", "%ctr run --rm {img} -- sh -c 'echo out; echo err >&2'"),
    ("rm", "%ctr rm -f {box}"),
    ("lock", "%ctr lock --show"),
    ("ns ls", "%ctr ns ls"),
    ("ns rm", "%ctr ns rm {emptyns}"),
    ("down", "%ctr down"),
)

#: Contract capabilities (``capabilities.TABLE``) a command may be refused for, besides the features.
COMMAND_CAPABILITIES = {"snapshots": "snapshots", "mount": "snapshots", "checkpoint": "snapshots",
                        "checkpoints": "snapshots"}


def _declared_missing(backend: str, command: str) -> bool:
    features = capabilities.feature_table()[backend]
    if any(command in item.commands and features[item.title].support is capabilities.Support.NO
           for item in FEATURES):
        return True
    key = COMMAND_CAPABILITIES.get(command)
    return key is not None and not capabilities.supports(backend, key)


@pytest.fixture
def shell(be: Backend, conformance_env: EnvironmentInfo, monkeypatch: pytest.MonkeyPatch,
          tmp_path: Path) -> Iterator[Any]:
    monkeypatch.setenv("CTR_MAGIC_HOME", conformance_env.base_dir)
    monkeypatch.chdir(tmp_path)
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "ctr_magic")
    magic = ip.magics_manager.registry["CtrMagic"]
    namespace = getattr(be.service, "namespace", "") if be.name == "containerd" else ""
    magic.backend = be.name
    magic.namespace = namespace
    magic.progress = "none"
    # The session uses the test's own connection to this backend (the Apple one is a supervised stand-in),
    # lent: when the session lets it go (`%ctr up` points it at the environment's socket) it is not closed.
    magic.session._service, magic.session._service_key = _Lent(be.service), (be.name, "", namespace)
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "ctr_magic")
        ip.config.pop("CtrMagic", None)


class _Lent:
    """A service the session may use but not close."""

    def __init__(self, service: Any) -> None:
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)

    def close(self) -> None:
        pass


def _run(ip: Any, line: str) -> tuple[Any, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        result = ip.run_cell(line)
    finally:
        sys.stdout, sys.stderr = saved
    return result, out.getvalue(), err.getvalue()


def _empty_namespace(be: Backend, conformance_env: EnvironmentInfo) -> str:
    name = f"walk-empty-{RUN_ID}"
    if be.name == "containerd":
        from ctr_magic.containerd.service import DefaultService

        with DefaultService.connect(conformance_env.containerd_socket, name) as other:
            other.collect_garbage()  # a lease made and dropped: the namespace exists, empty
    return name


def test_every_subcommand_works_or_says_not_supported(be: Backend, shell: Any, conformance_env: EnvironmentInfo,
                                                      tmp_path: Path) -> None:
    (tmp_path / "walk.txt").write_text("walked\n")
    box = f"walk-{be.name[:3]}-{RUN_ID}"
    be.made.append(box)
    values = {"img": be.images["busybox"], "reg": conformance_env.registry_addr, "box": box, "tmp": str(tmp_path),
              "be": be.name, "run": RUN_ID, "emptyns": _empty_namespace(be, conformance_env)}
    known = {name for name, _ in WALK}
    extra = sorted(" ".join(words) for words in parsing.commands() if " ".join(words) not in known)
    matrix: dict[str, str] = {}
    problems = []
    for name, template in [*WALK, *((name, f"%ctr {name} --help") for name in extra)]:
        line = template.format(**values)
        result, out, err = _run(shell, line)
        if result.success:
            matrix[name] = "works"
            if name == "up":  # what it reports is in the backend's own terms
                daemon = {"containerd": "containerd", "docker": "dockerd"}.get(be.name, "backend")
                if f" {daemon} " not in out or (be.name == "docker" and "started containerd" in out):
                    problems.append(f"{line}: said {out!r}")
            if name == "run" and ("out\n" not in out or "err\n" not in err or "err" in out):
                problems.append(f"{line}: stdout {out!r}, stderr {err!r}")
            continue
        error = result.error_in_exec
        shown = [text for text in (out + err).splitlines() if text.strip()]
        if isinstance(error, CellFailure) and isinstance(error, errors.NotSupported) and len(shown) <= 1:
            matrix[name] = "NotSupported: " + str(error).split(": ", 1)[-1]
            if not _declared_missing(be.name, name):
                problems.append(f"{line}: NotSupported but the backend is declared with it: {error}")
            continue
        problems.append(f"{line}: {type(error).__name__}: {error}")
    with contextlib.suppress(Exception):
        for version in be.service.list_checkpoints(box):
            be.service.remove_snapshot(be.service.snapshotter, version.name)
    print(f"\n{be.name}: " + "; ".join(f"{k}={v.split(':')[0]}" for k, v in matrix.items()))
    for name, outcome in matrix.items():
        if outcome != "works":
            print(f"{be.name}: %ctr {name}: {outcome}")
    if extra:
        print(f"{be.name}: walked with --help only: {', '.join(extra)}")
    assert not problems, "\n".join(problems)
