"""The embedded private environment: our own containerd, registry and (optionally) dockerd.

``Environment(base_dir).up()`` starts

* ``containerd --config <base>/containerd/config.toml`` with its own root (under the base dir),
  state and sockets (under a short run dir, ``/run/ctr-magic/<hash of base dir>/``), the CRI
  plugin disabled and no debug/metrics listeners;
* ``docker-registry serve <base>/registry/config.yml`` on ``127.0.0.1:<free port>`` with
  filesystem storage under the base dir and deletes enabled;
* optionally ``dockerd --data-root <base>/docker ...`` on top of that containerd.

The pids, ports and paths are kept in ``<base>/state.json`` so ``status()`` and ``down()`` work
from any process. ``down()`` kills every task, stops the daemons and leaves no process, mount or
socket behind (nor the empty per-namespace state dirs runc's shims leave in /run/containerd/runc).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import http.client
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any

from ctr_magic import errors
from ctr_magic.constants import (
    CNI_BIN_DIRS,
    DEFAULT_RUNTIME,
    DEFAULT_SNAPSHOTTER,
    ENV_DOCKER_HOST,
    ENV_HOME,
    ENV_REGISTRY,
    ENV_SOCKET,
)
from ctr_magic.containerd.mounts import mount_points

log = logging.getLogger(__name__)

DEFAULT_BASE_DIR = "/var/lib/ctr-magic"
RUN_ROOT = "/run/ctr-magic"
STATE_FILE = "state.json"
STATE_VERSION = 1
UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the trailing NUL

#: Debian package that provides each binary we run.
PACKAGES: dict[str, str] = {
    "containerd": "containerd",
    "ctr": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "runc": "runc",
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "busybox": "busybox-static",
    "dockerd": "docker.io",
    "docker": "docker.io",
    "bridge": "containernetworking-plugins",
}
_EXTRA_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

# Plugins that only slow start-up down or log errors on a plain machine.
_DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
)

MNT_DETACH = 2
# Fixed by containerd 1.6 and its runc v2 shim, whatever containerd's own state dir is.
SHIM_SOCKET_DIR = "/run/containerd/s"
RUNC_ROOT = "/run/containerd/runc"


# --------------------------------------------------------------------------- binaries


def _search_path() -> str:
    parts = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    parts += [p for p in _EXTRA_PATH if p not in parts]
    return os.pathsep.join(parts)


def find_binary(name: str) -> str:
    """Absolute path of ``name`` (also looking in the sbin dirs); error names the Debian package."""
    found = shutil.which(name, path=_search_path())
    if found:
        return found
    package = PACKAGES.get(name, name)
    raise errors.Unavailable(
        f"{name} not found", hint=f"install the Debian package {package} (apt-get install -y {package})"
    )


def cni_bin_dir() -> str:
    """Directory holding the CNI plugins (``bridge``, ``loopback``...)."""
    for d in CNI_BIN_DIRS:
        if os.access(os.path.join(d, "bridge"), os.X_OK):
            return d
    raise errors.Unavailable(
        "CNI plugins not found",
        hint="install the Debian package containernetworking-plugins (apt-get install -y containernetworking-plugins)",
    )


# --------------------------------------------------------------------------- processes

_children: dict[int, subprocess.Popen[bytes]] = {}


def _read_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]] if raw else []


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def _proc_state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def _alive(pid: int | None) -> bool:
    """True while ``pid`` exists and is not a zombie (our own children are reaped here)."""
    if not pid:
        return False
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    return _proc_state(pid) not in (None, "Z", "X")


def _iter_processes() -> Iterator[tuple[int, list[str]]]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            pid = int(entry.name)
            argv = _read_cmdline(pid)
            if argv and _alive(pid):
                yield pid, argv


def _arg_value(argv: Sequence[str], flag: str) -> str | None:
    """Value of ``flag`` in argv, as ``flag value`` or ``flag=value``."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


def _children_of(pids: set[int]) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(entry.name)
            if fields and int(fields[1]) in pids:
                found.append(int(entry.name))
    return found


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def _stop_pids(pids: Sequence[int], what: str, timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; raises if something survives SIGKILL."""
    pids = [p for p in pids if _alive(p)]
    if not pids:
        return
    log.info("stopping %s (pid %s)", what, ", ".join(map(str, pids)))
    for p in pids:
        _signal(p, signal.SIGTERM)
    if _wait_until(lambda: not any(_alive(p) for p in pids), timeout):
        return
    log.warning("%s did not exit within %.0fs of SIGTERM, sending SIGKILL", what, timeout)
    _kill_pids(pids, what)


def _kill_pids(pids: Sequence[int], what: str, timeout: float = 10.0) -> None:
    for p in pids:
        _signal(p, signal.SIGKILL)
    if not _wait_until(lambda: not any(_alive(p) for p in pids), timeout):
        left = [p for p in pids if _alive(p)]
        raise errors.CtrError(f"{what} (pid {', '.join(map(str, left))}) survived SIGKILL")


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------- mounts


def mounts_under(roots: Sequence[str | os.PathLike[str]], *, include_roots: bool = True) -> list[str]:
    """Mount points (from /proc/self/mountinfo) below (or, with ``include_roots``, at) any of ``roots``."""
    prefixes = [os.path.realpath(r) for r in roots]
    return [point for point in mount_points()
            if any((include_roots and point == p) or point.startswith(p + "/") for p in prefixes)]


def _umount(path: str, flags: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(path), flags) == 0:
        return 0
    return ctypes.get_errno()


def unmount_all(roots: Sequence[str | os.PathLike[str]], *, include_roots: bool = True, timeout: float = 10.0) -> None:
    """Unmount everything below ``roots``, deepest first (lazily if busy)."""
    deadline = time.monotonic() + timeout
    while True:
        points = mounts_under(roots, include_roots=include_roots)
        if not points:
            return
        if time.monotonic() > deadline:
            raise errors.CtrError(f"could not unmount {', '.join(points[:5])}")
        for point in sorted(set(points), key=lambda p: (p.count("/"), len(p)), reverse=True):
            err = _umount(point)
            if err in (errno.EBUSY, errno.EAGAIN):
                log.warning("%s busy, detaching lazily", point)
                err = _umount(point, MNT_DETACH)
            if err not in (0, errno.EINVAL, errno.ENOENT):
                log.warning("umount %s: %s", point, os.strerror(err))
            else:
                log.debug("unmounted %s", point)


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class EnvironmentInfo:
    """Where the running environment can be reached."""

    base_dir: str
    run_dir: str
    containerd_socket: str
    containerd_pid: int
    containerd_config: str
    registry_addr: str
    registry_pid: int
    dockerd_socket: str | None = None
    dockerd_pid: int | None = None
    started_at: float = 0.0
    runtime: str = DEFAULT_RUNTIME
    snapshotter: str = DEFAULT_SNAPSHOTTER

    @property
    def pids(self) -> dict[str, int]:
        out = {"containerd": self.containerd_pid, "registry": self.registry_pid}
        if self.dockerd_pid:
            out["dockerd"] = self.dockerd_pid
        return out

    @property
    def docker_host(self) -> str | None:
        return f"unix://{self.dockerd_socket}" if self.dockerd_socket else None

    @property
    def log_dir(self) -> str:
        return os.path.join(self.base_dir, "logs")

    def env(self) -> dict[str, str]:
        """Environment variables pointing clients at this environment."""
        out = {ENV_SOCKET: self.containerd_socket, ENV_REGISTRY: self.registry_addr, ENV_HOME: self.base_dir}
        if self.docker_host:
            out[ENV_DOCKER_HOST] = self.docker_host
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvironmentInfo:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def default_base_dir() -> Path:
    return Path(os.environ.get(ENV_HOME) or DEFAULT_BASE_DIR)


def default_run_dir(base_dir: str | os.PathLike[str]) -> Path:
    """``/run/ctr-magic/<12 hex of sha256(base_dir)>`` (``/tmp/ctr-magic-<uid>/...`` without /run)."""
    digest = hashlib.sha256(os.fsencode(os.path.realpath(base_dir))).hexdigest()[:12]
    root = Path(RUN_ROOT) if os.access("/run", os.W_OK) else Path(f"/tmp/ctr-magic-{os.getuid()}")
    return root / digest


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


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def registry_ready(addr: str, timeout: float = 2.0) -> bool:
    """True when ``GET http://<addr>/v2/`` answers 200."""
    try:
        with _NO_PROXY_OPENER.open(f"http://{addr}/v2/", timeout=timeout) as resp:
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


# --------------------------------------------------------------------------- environment


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
        self.with_docker = with_docker
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.info: EnvironmentInfo | None = None

    def __repr__(self) -> str:
        return f"Environment(base_dir={str(self.base_dir)!r}, run_dir={str(self.run_dir)!r})"

    # ---- paths

    @property
    def state_file(self) -> Path:
        return self.base_dir / STATE_FILE

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "logs"

    @property
    def containerd_config(self) -> Path:
        return self.base_dir / "containerd" / "config.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def registry_config(self) -> Path:
        return self.base_dir / "registry" / "config.yml"

    @property
    def docker_root(self) -> Path:
        return self.base_dir / "docker"

    @property
    def docker_exec_root(self) -> Path:
        return self.run_dir / "docker"

    @property
    def docker_socket(self) -> Path:
        return self.run_dir / "docker.sock"

    def _our_mounts(self) -> list[str]:
        # Everything below the base dir and the run dir, but never the base dir itself:
        # it may be a mount point the user made on purpose.
        return mounts_under([self.base_dir, self.run_dir], include_roots=False)

    def _unmount_ours(self) -> None:
        unmount_all([self.base_dir, self.run_dir], include_roots=False)

    # ---- context manager

    def __enter__(self) -> Environment:
        self.up()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()

    # ---- locking and state

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

            if not _wait_until(try_lock, timeout, interval=0.1):
                raise errors.Unavailable(f"{self.base_dir} is locked by another ctr-magic process")
            yield
        finally:
            os.close(fd)

    def _read_state(self) -> EnvironmentInfo | None:
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable state file %s: %s", self.state_file, exc)
            return None
        if data.get("version") != STATE_VERSION:
            log.warning("ignoring state file %s with version %r", self.state_file, data.get("version"))
            return None
        return EnvironmentInfo.from_dict(data.get("info", {}))

    def _write_state(self, info: EnvironmentInfo) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": STATE_VERSION, "info": info.to_dict()}, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    # ---- process identification

    def _is_containerd(self, argv: Sequence[str]) -> bool:
        return (
            bool(argv)
            and os.path.basename(argv[0]) == "containerd"
            and _arg_value(argv, "--config") == str(self.containerd_config)
        )

    def _is_registry(self, argv: Sequence[str]) -> bool:
        return "docker-registry" in os.path.basename(argv[0]) and str(self.registry_config) in argv

    def _is_dockerd(self, argv: Sequence[str]) -> bool:
        return os.path.basename(argv[0]) == "dockerd" and _arg_value(argv, "--data-root") == str(self.docker_root)

    def _is_shim(self, argv: Sequence[str]) -> bool:
        return "containerd-shim" in os.path.basename(argv[0]) and _arg_value(argv, "-address") == str(
            self.containerd_socket
        )

    def _pid_is(self, pid: int | None, check: Callable[[Sequence[str]], bool]) -> bool:
        if not _alive(pid):
            return False
        argv = _read_cmdline(pid)  # type: ignore[arg-type]
        return bool(argv) and check(argv)  # type: ignore[arg-type]

    def _find(self, check: Callable[[Sequence[str]], bool]) -> list[int]:
        return [pid for pid, argv in _iter_processes() if check(argv)]

    # ---- public API

    def status(self) -> EnvironmentInfo | None:
        """The running environment, or None when containerd or the registry is not running."""
        info = self._read_state()
        if info is None:
            return None
        if not self._pid_is(info.containerd_pid, self._is_containerd) or not os.path.exists(info.containerd_socket):
            return None
        if not self._pid_is(info.registry_pid, self._is_registry):
            return None
        if info.dockerd_pid and not self._pid_is(info.dockerd_pid, self._is_dockerd):
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
            try:
                if info is None:
                    info = self._adopt_or_start_base()
                if want_docker and not info.dockerd_pid:
                    info = self._start_dockerd(info)
            except BaseException:
                if self._find(self._is_shim):  # containers still run: only `down` may stop them
                    log.warning("start-up failed; containers still run, so nothing is cleaned up")
                    raise
                log.warning("start-up failed, cleaning up %s", self.base_dir)
                with contextlib.suppress(Exception):
                    self._down_locked()
                raise
            self._write_state(info)
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
            self._down_locked()
            log.info("environment in %s down in %.2fs", self.base_dir, time.monotonic() - t0)
        self.info = None

    # ---- start

    def _daemon_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("REGISTRY_", "CONTAINERD_", "DOCKER_")) and k != "NOTIFY_SOCKET"
        }
        env["PATH"] = _search_path()
        return env

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / log_name
        log.debug("starting %s (log %s)", " ".join(argv), log_path)
        with open(log_path, "ab") as logf:
            logf.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            logf.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=self._daemon_env(),
                cwd=self.base_dir,
                start_new_session=True,
            )
        _children[proc.pid] = proc
        return proc

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

        ok = _wait_until(check, timeout, interval=0.05)
        if ok and not exited:
            return
        reason = f"exited with status {proc.returncode}" if exited else f"not ready after {timeout:.0f}s"
        if not exited:
            _stop_pids([proc.pid], what, 5.0)
        raise errors.Unavailable(f"{what} {reason}; last log lines: {_log_tail(self.log_dir / log_name)}")

    def _check_socket_path(self, path: Path) -> None:
        if len(os.fsencode(path)) > UNIX_PATH_MAX:
            raise errors.InvalidArgument(f"socket path too long ({len(str(path))} bytes): {path}")

    def _adopt_or_start_base(self) -> EnvironmentInfo:
        """After containerd died its shims keep the containers running: start containerd again and let it
        reconnect to them (it reads their sockets from its state dir). Only with no shim left are the
        leftovers of a crashed or half-started environment cleared and everything started afresh."""
        previous = self._read_state()
        shims = self._find(self._is_shim)
        if previous is None or not shims:
            self._down_locked()
            return self._start_base()
        log.info("containerd of %s is not running but %d shim(s) are: starting it to adopt them",
                 self.base_dir, len(shims))
        containerd_pid = previous.containerd_pid
        if not self._pid_is(containerd_pid, self._is_containerd):
            containerd_pid = self._start_containerd()
        registry_addr, registry_pid = previous.registry_addr, previous.registry_pid
        if not self._pid_is(registry_pid, self._is_registry):
            _stop_pids(self._find(self._is_registry), "docker-registry", self.stop_timeout)
            registry_addr, registry_pid = self._start_registry()
        info = EnvironmentInfo.from_dict({**previous.to_dict(), "containerd_pid": containerd_pid,
                                          "registry_addr": registry_addr, "registry_pid": registry_pid})
        self._write_state(info)
        return info

    def _start_containerd(self) -> int:
        containerd = find_binary("containerd")
        self.containerd_config.write_text(self._containerd_toml())
        t0 = time.monotonic()
        proc = self._spawn([containerd, "--config", str(self.containerd_config)], "containerd.log")
        self._wait_ready(proc, self._containerd_answers, "containerd", "containerd.log", self.start_timeout)
        log.info("containerd ready in %.2fs (pid %d)", time.monotonic() - t0, proc.pid)
        return proc.pid

    def _start_base(self) -> EnvironmentInfo:
        for name in ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "docker-registry"):
            find_binary(name)  # a missing binary fails before anything starts
        for sock in (self.containerd_socket, self.docker_socket, Path(str(self.containerd_socket) + ".ttrpc")):
            self._check_socket_path(sock)
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        for sub in ("containerd/root", "containerd/opt", "registry/data"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)

        containerd_pid = self._start_containerd()
        addr, registry_pid = self._start_registry()
        info = EnvironmentInfo(
            base_dir=str(self.base_dir),
            run_dir=str(self.run_dir),
            containerd_socket=str(self.containerd_socket),
            containerd_pid=containerd_pid,
            containerd_config=str(self.containerd_config),
            registry_addr=addr,
            registry_pid=registry_pid,
            started_at=time.time(),
        )
        self._write_state(info)
        return info

    def _start_registry(self) -> tuple[str, int]:
        """(address, pid) of a newly started registry; the port used last time is preferred so references
        stay stable."""
        registry = find_binary("docker-registry")
        previous = self._previous_registry_port()
        for attempt in range(3):
            port = _free_port(previous if attempt == 0 else None)
            addr = f"127.0.0.1:{port}"
            self.registry_config.write_text(self._registry_yaml(addr))
            t0 = time.monotonic()
            proc = self._spawn([registry, "serve", str(self.registry_config)], "registry.log")
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
        return addr, proc.pid

    def _previous_registry_port(self) -> int | None:
        info = self._read_state()
        if info is None:
            try:
                m = re.search(r"addr: 127\.0\.0\.1:(\d+)", self.registry_config.read_text())
            except OSError:
                return None
            return int(m.group(1)) if m else None
        return int(info.registry_addr.rpartition(":")[2])

    def _start_dockerd(self, info: EnvironmentInfo) -> EnvironmentInfo:
        dockerd = find_binary("dockerd")
        self.docker_root.mkdir(parents=True, exist_ok=True)
        self.docker_exec_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        daemon_json = self.base_dir / "dockerd.json"
        # Keep dockerd's identity key out of /etc/docker.
        daemon_json.write_text(json.dumps({"deprecated-key-path": str(self.base_dir / "docker-key.json")}) + "\n")
        pidfile = self.run_dir / "docker.pid"
        self._remove_stale_pidfile(pidfile)
        argv = [
            dockerd,
            "--containerd", info.containerd_socket,
            "--data-root", str(self.docker_root),
            "--exec-root", str(self.docker_exec_root),
            "--pidfile", str(pidfile),
            "-H", f"unix://{self.docker_socket}",
            "--config-file", str(daemon_json),
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--bridge=none",
            "--userland-proxy=false",
        ]  # fmt: skip
        t0 = time.monotonic()
        proc = self._spawn(argv, "dockerd.log")
        sock = str(self.docker_socket)

        def ping() -> bool:
            try:
                return _unix_http_get(sock, "/_ping")[0] == 200
            except OSError:
                return False

        self._wait_ready(proc, ping, "dockerd", "dockerd.log", max(self.start_timeout, 60.0))
        log.info("dockerd ready in %.2fs (pid %d)", time.monotonic() - t0, proc.pid)
        return EnvironmentInfo.from_dict({**info.to_dict(), "dockerd_pid": proc.pid, "dockerd_socket": sock})

    def _remove_stale_pidfile(self, pidfile: Path) -> None:
        """dockerd refuses to start while its pid file exists; after a crash the file outlives it."""
        try:
            pid = int(pidfile.read_text().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pidfile.exists() and not self._pid_is(pid, self._is_dockerd):
            log.info("removing the pid file of a dockerd that is gone (%s)", pidfile)
            pidfile.unlink(missing_ok=True)

    def _containerd_answers(self) -> bool:
        if not self.containerd_socket.exists():
            return False
        return self._ctr("version", timeout=5.0).returncode == 0

    def _containerd_toml(self) -> str:
        disabled = ", ".join(f'"{p}"' for p in _DISABLED_PLUGINS)
        sock = self.containerd_socket
        return f"""\
# Written by ctr-magic; regenerated on every `up`.
version = 2
root = "{self.base_dir / "containerd" / "root"}"
state = "{self.run_dir / "containerd"}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.gc.v1.scheduler"]
    pause_threshold = 0.02
    deletion_threshold = 0
    mutation_threshold = 100
    schedule_delay = "0s"
    startup_delay = "100ms"
  [plugins."io.containerd.internal.v1.opt"]
    path = "{self.base_dir / "containerd" / "opt"}"
  # Without CRI, clients pick runtime and snapshotter: ctr-magic and ctr default to
  # {DEFAULT_RUNTIME} (runc) and the {DEFAULT_SNAPSHOTTER} snapshotter.
"""

    def _registry_yaml(self, addr: str) -> str:
        return f"""\
# Written by ctr-magic; regenerated on every `up`.
version: 0.1
log:
  level: info
  fields:
    service: ctr-magic-registry
storage:
  filesystem:
    rootdirectory: {self.base_dir / "registry" / "data"}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: {secrets.token_hex(16)}
health:
  storagedriver:
    enabled: false
"""

    # ---- stop

    def _ctr(self, *args: str, namespace: str | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        cmd = [find_binary("ctr"), "--address", str(self.containerd_socket)]
        if namespace:
            cmd += ["--namespace", namespace]
        cmd += list(args)
        try:
            return subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, env=self._daemon_env(),
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(cmd, 124, "", f"timed out after {timeout}s")

    def _namespaces(self) -> list[str]:
        """containerd's namespaces; empty if it does not answer."""
        res = self._ctr("namespaces", "list", "-q", timeout=10.0)
        return res.stdout.split() if res.returncode == 0 else []

    def _tasks(self, namespaces: Sequence[str]) -> list[tuple[str, str, str]]:
        """(namespace, id, status) of every task in *namespaces*; empty if containerd does not answer."""
        out = []
        for ns in namespaces:
            listing = self._ctr("tasks", "list", namespace=ns, timeout=10.0)
            for line in listing.stdout.splitlines()[1:]:
                parts = line.split()
                if len(parts) >= 3:
                    out.append((ns, parts[0], parts[2]))
        return out

    def _kill_tasks(self, namespaces: Sequence[str]) -> list[tuple[str, str]]:
        tasks = self._tasks(namespaces)
        for ns, task_id, status in tasks:
            if status != "STOPPED":
                log.info("killing task %s/%s", ns, task_id)
                self._ctr("tasks", "kill", "--all", "--signal", "SIGKILL", task_id, namespace=ns, timeout=10.0)
        return [(ns, task_id) for ns, task_id, _ in tasks]

    def _delete_tasks(self, namespaces: Sequence[str]) -> list[tuple[str, str]]:
        tasks = self._tasks(namespaces)
        for ns, task_id, _ in tasks:
            res = self._ctr("tasks", "delete", "--force", task_id, namespace=ns, timeout=20.0)
            if res.returncode != 0:
                log.warning("could not delete task %s/%s: %s", ns, task_id, res.stderr.strip())
        return [(ns, task_id) for ns, task_id, _ in tasks]

    def _runc_delete(self, namespace: str, task_id: str) -> None:
        """Remove runc's state and cgroups of a container whose shim we had to kill."""
        root = Path(RUNC_ROOT) / namespace
        if not (root / task_id).exists():
            return
        cmd = [find_binary("runc"), "--root", str(root), "delete", "--force", task_id]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            log.warning("runc delete %s/%s: %s", namespace, task_id, res.stderr.strip())

    def _shim_socket(self, namespace: str, task_id: str) -> Path:
        # containerd 1.6 puts shim sockets at /run/containerd/s/sha256(<address>/<ns>/<id>).
        key = os.path.join(str(self.containerd_socket), namespace, task_id)
        return Path(SHIM_SOCKET_DIR) / hashlib.sha256(key.encode()).hexdigest()

    def _remove_empty_runc_roots(self, namespaces: set[str]) -> None:
        """runc's per-namespace state dirs (``/run/containerd/runc/<ns>``) the shims leave behind, if empty."""
        for ns in namespaces:
            if not ns or "/" in ns or ns.startswith("."):
                continue
            path = Path(RUNC_ROOT) / ns
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:  # not empty: a container's state is still there (not ours to judge)
                log.debug("leaving %s: %s", path, exc.strerror)
            else:
                log.debug("removed %s", path)

    def _down_locked(self) -> None:
        state = self._read_state()
        containerd_up = self._containerd_answers() if self.containerd_socket.exists() else False
        seen: set[tuple[str, str]] = set()
        # Listed while containerd still answers: their runc dirs are removed at the end.
        namespaces = self._namespaces() if containerd_up else []

        # 1. kill every task so nothing waits on a graceful stop
        if containerd_up:
            seen.update(self._kill_tasks(namespaces))
            _wait_until(lambda: all(s == "STOPPED" for _, _, s in self._tasks(namespaces)), self.stop_timeout, 0.1)

        # 2. dockerd (it owns the moby namespace's containers)
        dockerd_pids = self._find(self._is_dockerd)
        if state and state.dockerd_pid and self._pid_is(state.dockerd_pid, self._is_dockerd):
            dockerd_pids = sorted({*dockerd_pids, state.dockerd_pid})
        _stop_pids(dockerd_pids, "dockerd", max(self.stop_timeout, 20.0))

        # 3. delete what is left, then containerd itself
        if containerd_up:
            seen.update(self._delete_tasks(namespaces))
        _stop_pids(self._find(self._is_containerd), "containerd", self.stop_timeout)

        # 4. shims (and their container processes) that outlived containerd
        shims = {pid: argv for pid, argv in _iter_processes() if self._is_shim(argv)}
        if shims:
            orphans = _children_of(set(shims))
            log.warning("killing %d leftover shim(s) and %d container process(es)", len(shims), len(orphans))
            _kill_pids([*orphans, *shims], "containerd-shim")
            for argv in shims.values():
                ns, task_id = _arg_value(argv, "-namespace"), _arg_value(argv, "-id")
                if ns and task_id:
                    seen.add((ns, task_id))
                    self._runc_delete(ns, task_id)

        # 5. registry
        _stop_pids(self._find(self._is_registry), "docker-registry", self.stop_timeout)

        # 6. mounts, shim sockets, runc's namespace dirs and the run dir
        self._unmount_ours()
        for ns, task_id in seen:
            with contextlib.suppress(FileNotFoundError):
                self._shim_socket(ns, task_id).unlink()
        self._remove_empty_runc_roots({*namespaces, *(ns for ns, _ in seen)})
        if self.run_dir.exists():
            if mounts_under([self.run_dir]):
                raise errors.CtrError(f"{self.run_dir} still has mounts; not removing it")
            shutil.rmtree(self.run_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()
        self._verify_down()

    def _verify_down(self) -> None:
        left = [
            pid
            for pid, argv in _iter_processes()
            if self._is_containerd(argv) or self._is_registry(argv) or self._is_dockerd(argv) or self._is_shim(argv)
        ]
        if left:
            raise errors.CtrError(f"processes still running after down: {left}")
        mounts = self._our_mounts()
        if mounts:
            raise errors.CtrError(f"mounts left after down: {mounts[:5]}")


def socket_for(base_dir: str | os.PathLike[str] | None = None) -> str:
    """containerd socket path of the environment under ``base_dir`` (running or not)."""
    return str(Environment(base_dir).containerd_socket)


__all__ = [
    "DEFAULT_BASE_DIR",
    "PACKAGES",
    "Environment",
    "EnvironmentInfo",
    "cni_bin_dir",
    "default_base_dir",
    "default_run_dir",
    "find_binary",
    "mounts_under",
    "registry_ready",
    "socket_for",
    "unmount_all",
]
