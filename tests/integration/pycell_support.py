"""Shared by the %%ctr py and limits tests: a backend (containerd or the private dockerd), an IPython
shell on it, the Debian + pandas image, and helpers to run cells and look at processes.

The image with python3 is the Debian + pandas one of notebook 02 (``ctr_magic.debian_image``):
built once by debootstrap (about 100 s) into ``$CTR_MAGIC_HOME/cache`` — the cache the notebooks
use too, so ``make test`` builds it at most once — and only pushed to the session's registry after
that. It has Python 3.11 with pandas 1.5 and numpy 1.24 and no pyarrow, which is what makes it a
good test: every DataFrame and array crosses between library versions that do not read each
other's pickles.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cell_support import Tee
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from ctr_magic import errors
from ctr_magic.env import Environment, EnvironmentInfo, default_base_dir
from ctr_magic.notebook.magics.failure import CellFailure
from ctr_magic.types import DeleteContainerOptions

BACKENDS = ("containerd", "docker")


@dataclass
class Backend:
    name: str
    service: Any
    socket: str
    info: EnvironmentInfo
    namespace: str

    def cli(self, *args: str, timeout: float = 60.0) -> str:
        """``ctr`` or ``docker`` against this backend, stdout as text."""
        if self.name == "containerd":
            cmd = ["ctr", "-a", self.socket, "-n", self.namespace, *args]
        else:
            cmd = ["docker", "-H", f"unix://{self.socket}", *args]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout).stdout

    def process_names(self, container_id: str) -> list[str]:
        """Command names of the live (not zombie) processes of a container, from ``ctr task ps`` / ``docker top``."""
        if self.name == "docker":
            lines = self.cli("top", container_id, "-o", "pid,stat,comm").splitlines()[1:]
            return [line.split()[2] for line in lines if line.split() and not line.split()[1].startswith("Z")]
        names = []
        for line in self.cli("task", "ps", container_id).splitlines()[1:]:
            pid = line.split()[0]
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/stat") as fh:
                    stat = fh.read()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":
                    names.append(stat.split("(", 1)[1].rsplit(")", 1)[0])
        return names


def make_backend(name: str, environment: EnvironmentInfo, namespace: str) -> Iterator[Backend]:
    if name == "containerd":
        from ctr_magic.containerd.service import DefaultService

        service: Any = DefaultService.connect(environment.containerd_socket, namespace)
        socket = environment.containerd_socket
        info = environment
    else:
        from ctr_magic.docker.service import DockerService

        info = Environment(environment.base_dir).up(with_docker=True)
        socket = info.dockerd_socket
        service = DockerService.connect(socket)
    before = {c.id for c in service.list_containers()}
    try:
        yield Backend(name, service, socket, info, namespace)
    finally:
        for container in service.list_containers():
            if container.id not in before:
                with contextlib.suppress(errors.CtrError):
                    service.delete_container(container.id, DeleteContainerOptions(force=True))
        service.close()


def python_image(registry: str) -> str:
    from ctr_magic.debian_image import ensure_debian_image

    return ensure_debian_image(registry, cache_root=default_base_dir() / "cache").ref


@contextlib.contextmanager
def magic_shell(backend: Backend, base_dir: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("CTR_MAGIC_HOME", base_dir)
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "ctr_magic")
    ip.run_line_magic("config", f"CtrMagic.backend = {backend.name!r}")
    ip.run_line_magic("config", f"CtrMagic.socket = {backend.socket!r}")
    if backend.name == "containerd":
        ip.run_line_magic("config", f"CtrMagic.namespace = {backend.namespace!r}")
    ip.run_line_magic("config", "CtrMagic.progress = 'none'")
    before = {c.id for c in backend.service.list_containers()}
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "ctr_magic")
        ip.config.pop("CtrMagic", None)
        for container in backend.service.list_containers():
            if container.id not in before:
                with contextlib.suppress(errors.CtrError):
                    backend.service.delete_container(container.id, DeleteContainerOptions(force=True))


def run_cell(ip: Any, cell: str, *, stdout: Tee | None = None) -> tuple[Any, str, str]:
    out, err = stdout or Tee(), Tee()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        result = ip.run_cell(cell)
    finally:
        sys.stdout, sys.stderr = saved
    return result, out.text, err.text


def ok(ip: Any, cell: str) -> tuple[str, str]:
    result, out, err = run_cell(ip, cell)
    assert result.success, out + err
    return out, err


def failure_line(result: Any, out: str, kind: type[BaseException] = errors.CtrError) -> str:
    """The one line a failed %ctr cell shows (and that it failed with a *kind*)."""
    assert not result.success
    assert isinstance(result.error_in_exec, CellFailure) and isinstance(result.error_in_exec, kind), \
        repr(result.error_in_exec)
    shown = [line for line in out.splitlines() if line.strip() and not line.startswith("pulled ")]
    assert len(shown) == 1, shown
    return shown[0]
