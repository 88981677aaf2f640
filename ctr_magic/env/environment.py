"""``Environment``: a private containerd + registry (+ dockerd) under one base directory."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from .. import errors
from .config import containerd_toml
from .processes import ProcessTable, wait_until
from .start import Starter
from .state import EnvironmentInfo, EnvPaths, default_base_dir, default_run_dir
from .teardown import Teardown

log = logging.getLogger(__name__)


class Environment:
    """A private containerd + registry (+ dockerd) living under ``base_dir``.

    Usable as a context manager: ``with Environment(tmp) as env: env.info.containerd_socket``;
    leaving the block calls ``down()``.
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        with_docker: bool = False,
        run_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.base_dir = Path(os.path.realpath(base_dir if base_dir is not None else default_base_dir()))
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(self.base_dir)
        self.paths = EnvPaths(self.base_dir, self.run_dir)
        self.processes = ProcessTable()
        self.with_docker = with_docker
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.info: EnvironmentInfo | None = None

    def __repr__(self) -> str:
        return f"Environment(base_dir={str(self.base_dir)!r}, run_dir={str(self.run_dir)!r})"

    # ---- paths (see EnvPaths)

    @property
    def state_file(self) -> Path:
        return self.paths.state_file

    @property
    def log_dir(self) -> Path:
        return self.paths.log_dir

    @property
    def containerd_config(self) -> Path:
        return self.paths.containerd_config

    @property
    def containerd_socket(self) -> Path:
        return self.paths.containerd_socket

    @property
    def registry_config(self) -> Path:
        return self.paths.registry_config

    @property
    def docker_socket(self) -> Path:
        return self.paths.docker_socket

    # ---- context manager

    def __enter__(self) -> Environment:
        self.up()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()

    # ---- the parts

    def _containerd_toml(self) -> str:
        return containerd_toml(self.paths)

    def _starter(self) -> Starter:
        return Starter(self.paths, self.processes, containerd_toml=self._containerd_toml,
                       start_timeout=self.start_timeout)

    def _teardown(self) -> Teardown:
        return Teardown(self.paths, self.processes, stop_timeout=self.stop_timeout)

    @contextlib.contextmanager
    def _lock(self, timeout: float = 120.0) -> Iterator[None]:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.base_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:

            def try_lock() -> bool:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            if not wait_until(try_lock, timeout, interval=0.1):
                raise errors.Unavailable(f"{self.base_dir} is locked by another ctr-magic process")
            yield
        finally:
            os.close(fd)

    # ---- public API

    def status(self) -> EnvironmentInfo | None:
        """The running environment, or None when containerd or the registry is not running."""
        paths, processes = self.paths, self.processes
        info = paths.read_state()
        if info is None:
            return None
        if not processes.pid_is(info.containerd_pid, paths.is_containerd) or not os.path.exists(
            info.containerd_socket
        ):
            return None
        if not processes.pid_is(info.registry_pid, paths.is_registry):
            return None
        if info.dockerd_pid and not processes.pid_is(info.dockerd_pid, paths.is_dockerd):
            info = EnvironmentInfo.from_dict({**info.to_dict(), "dockerd_pid": None, "dockerd_socket": None})
        self.info = info
        return info

    def up(self, with_docker: bool | None = None) -> EnvironmentInfo:
        """Start whatever is not running yet and return where to reach it (idempotent)."""
        want_docker = self.with_docker if with_docker is None else with_docker
        with self._lock():
            info = self.status()
            if info is not None and (info.dockerd_pid or not want_docker):
                log.info("environment in %s already running", self.base_dir)
                return info
            if os.geteuid() != 0:
                raise errors.FailedPrecondition(
                    "the private environment needs root", hint="containerd and runc run as root; use sudo"
                )
            t0 = time.monotonic()
            starter = self._starter()
            try:
                if info is None:
                    self._teardown().run()  # clear leftovers of a crashed or half-started environment
                    info = starter.start_base()
                if want_docker and not info.dockerd_pid:
                    info = starter.start_dockerd(info)
            except BaseException:
                log.warning("start-up failed, cleaning up %s", self.base_dir)
                with contextlib.suppress(Exception):
                    self._teardown().run()
                raise
            self.paths.write_state(info)
            self.info = info
            log.info(
                "environment up in %.2fs: %s, registry %s",
                time.monotonic() - t0,
                info.containerd_socket,
                info.registry_addr,
            )
            return info

    def down(self) -> None:
        """Kill every task, stop the daemons, unmount, remove sockets and empty runc state dirs. Safe to repeat."""
        if not self.base_dir.exists() and not self.run_dir.exists():
            self.info = None
            return
        with self._lock():
            t0 = time.monotonic()
            self._teardown().run()
            log.info("environment in %s down in %.2fs", self.base_dir, time.monotonic() - t0)
        self.info = None


def socket_for(base_dir: str | os.PathLike[str] | None = None) -> str:
    """containerd socket path of the environment under ``base_dir`` (running or not)."""
    return str(Environment(base_dir).containerd_socket)


__all__ = ["Environment", "socket_for"]
