"""Starting the environment's daemons and waiting until each one answers."""

from __future__ import annotations

import http.client
import logging
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .. import errors
from ..logtail import log_tail
from .binaries import find_binary
from .config import dockerd_argv, dockerd_json, registry_yaml
from .ctrcli import CtrCli
from .processes import ProcessTable, daemon_env, wait_until
from .state import EnvironmentInfo, EnvPaths

log = logging.getLogger(__name__)

UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the trailing NUL


def _unix_http_get(sock_path: str, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("localhost", timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(sock_path)
        conn.sock = sock
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
        sock.close()


def registry_ready(addr: str, timeout: float = 2.0) -> bool:
    """True when ``GET http://<addr>/v2/`` answers 200."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{addr}/v2/", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return False


def _free_port(preferred: int | None = None) -> int:
    for port in (preferred, 0):
        if port is None:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the registry does
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise errors.Unavailable("no free TCP port on 127.0.0.1")


def _check_socket_path(path: Path) -> None:
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise errors.InvalidArgument(f"socket path too long ({len(str(path))} bytes): {path}")


class Starter:
    """Starts containerd and the registry (:meth:`start_base`), and dockerd on top (:meth:`start_dockerd`)."""

    def __init__(
        self,
        paths: EnvPaths,
        processes: ProcessTable,
        *,
        containerd_toml: Callable[[], str],
        start_timeout: float,
    ) -> None:
        self.paths = paths
        self.processes = processes
        self.ctr = CtrCli(paths)
        self.containerd_toml = containerd_toml
        self.start_timeout = start_timeout

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        return self.processes.spawn(argv, self.paths.log_dir / log_name, env=daemon_env(), cwd=self.paths.base_dir)

    def _wait_ready(
        self, proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, log_name: str, timeout: float
    ) -> None:
        exited = False

        def check() -> bool:
            nonlocal exited
            if proc.poll() is not None:
                exited = True
                return True
            return ready()

        ok = wait_until(check, timeout, interval=0.05)
        if ok and not exited:
            return
        reason = f"exited with status {proc.returncode}" if exited else f"not ready after {timeout:.0f}s"
        if not exited:
            self.processes.stop([proc.pid], what, 5.0)
        raise errors.Unavailable(f"{what} {reason}; last log lines: {log_tail(self.paths.log_dir / log_name)}")

    def start_base(self) -> EnvironmentInfo:
        paths = self.paths
        containerd = find_binary("containerd")
        find_binary("ctr")
        find_binary("containerd-shim-runc-v2")
        find_binary("runc")
        registry = find_binary("docker-registry")
        for sock in (paths.containerd_socket, paths.docker_socket, Path(str(paths.containerd_socket) + ".ttrpc")):
            _check_socket_path(sock)
        paths.run_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        for sub in ("containerd/root", "containerd/opt", "registry/data"):
            (paths.base_dir / sub).mkdir(parents=True, exist_ok=True)

        # containerd
        paths.containerd_config.write_text(self.containerd_toml())
        t0 = time.monotonic()
        proc = self._spawn([containerd, "--config", str(paths.containerd_config)], "containerd.log")
        self._wait_ready(proc, self.ctr.answers, "containerd", "containerd.log", self.start_timeout)
        containerd_pid = proc.pid
        log.info("containerd ready in %.2fs (pid %d)", time.monotonic() - t0, containerd_pid)

        # registry: prefer the port used last time so references stay stable
        previous = self._previous_registry_port()
        for attempt in range(3):
            port = _free_port(previous if attempt == 0 else None)
            addr = f"127.0.0.1:{port}"
            paths.registry_config.write_text(registry_yaml(paths, addr))
            t0 = time.monotonic()
            proc = self._spawn([registry, "serve", str(paths.registry_config)], "registry.log")
            try:
                self._wait_ready(
                    proc, lambda a=addr: registry_ready(a), "docker-registry", "registry.log", self.start_timeout
                )
            except errors.Unavailable:
                if attempt == 2:
                    raise
                log.warning("registry failed on port %d, retrying with another port", port)
                continue
            log.info("registry ready on %s in %.2fs (pid %d)", addr, time.monotonic() - t0, proc.pid)
            break
        info = EnvironmentInfo(
            base_dir=str(paths.base_dir),
            run_dir=str(paths.run_dir),
            containerd_socket=str(paths.containerd_socket),
            containerd_pid=containerd_pid,
            containerd_config=str(paths.containerd_config),
            registry_addr=addr,
            registry_pid=proc.pid,
            started_at=time.time(),
        )
        paths.write_state(info)
        return info

    def _previous_registry_port(self) -> int | None:
        info = self.paths.read_state()
        if info is None:
            try:
                m = re.search(r"addr: 127\.0\.0\.1:(\d+)", self.paths.registry_config.read_text())
            except OSError:
                return None
            return int(m.group(1)) if m else None
        return int(info.registry_addr.rpartition(":")[2])

    def start_dockerd(self, info: EnvironmentInfo) -> EnvironmentInfo:
        paths = self.paths
        dockerd = find_binary("dockerd")
        paths.docker_root.mkdir(parents=True, exist_ok=True)
        paths.docker_exec_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        (paths.base_dir / "dockerd.json").write_text(dockerd_json(paths))
        t0 = time.monotonic()
        proc = self._spawn(dockerd_argv(dockerd, paths, info.containerd_socket), "dockerd.log")
        sock = str(paths.docker_socket)

        def ping() -> bool:
            try:
                return _unix_http_get(sock, "/_ping")[0] == 200
            except OSError:
                return False

        self._wait_ready(proc, ping, "dockerd", "dockerd.log", max(self.start_timeout, 60.0))
        log.info("dockerd ready in %.2fs (pid %d)", time.monotonic() - t0, proc.pid)
        return EnvironmentInfo.from_dict({**info.to_dict(), "dockerd_pid": proc.pid, "dockerd_socket": sock})


__all__ = ["Starter", "registry_ready"]
