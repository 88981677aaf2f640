"""The environment's daemons as processes: starting them, finding them in /proc, stopping them.

:class:`ProcessTable` keeps the :class:`subprocess.Popen` of every daemon its environment started
so that they are reaped when they exit; processes started by another ctr-magic process are found
(and judged alive or not) through /proc alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from .. import errors
from .binaries import search_path

log = logging.getLogger(__name__)


def read_cmdline(pid: int) -> list[str] | None:
    """argv of *pid*; None when it is gone, empty for a kernel thread or a zombie."""
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


def arg_value(argv: Sequence[str], flag: str) -> str | None:
    """Value of ``flag`` in argv, as ``flag value`` or ``flag=value``."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def daemon_env() -> dict[str, str]:
    """Our environment without the variables that would reconfigure the daemons, PATH with the sbin dirs."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REGISTRY_", "CONTAINERD_", "DOCKER_")) and k != "NOTIFY_SOCKET"
    }
    env["PATH"] = search_path()
    return env


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class ProcessTable:
    """Daemons started here (reaped when they exit) and any other process, as /proc shows it."""

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, argv: list[str], log_path: Path, *, env: Mapping[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        """Start *argv* in its own session, stdout and stderr appended to *log_path*."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log.debug("starting %s (log %s)", " ".join(argv), log_path)
        with open(log_path, "ab") as logf:
            logf.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            logf.flush()
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                env=dict(env), cwd=cwd, start_new_session=True,
            )  # fmt: skip
        self._children[proc.pid] = proc
        return proc

    def alive(self, pid: int | None) -> bool:
        """True while ``pid`` exists and is not a zombie (our own children are reaped here)."""
        if not pid:
            return False
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            self._children.pop(pid, None)
            return False
        fields = _stat_fields(pid)
        return bool(fields) and fields[0] not in ("Z", "X")

    def running(self) -> Iterator[tuple[int, list[str]]]:
        """(pid, argv) of every live process with a command line."""
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                pid = int(entry.name)
                argv = read_cmdline(pid)
                if argv and self.alive(pid):
                    yield pid, argv

    def find(self, check: Callable[[Sequence[str]], bool]) -> list[int]:
        return [pid for pid, argv in self.running() if check(argv)]

    def pid_is(self, pid: int | None, check: Callable[[Sequence[str]], bool]) -> bool:
        """True when *pid* is alive and its command line passes *check*."""
        if not pid or not self.alive(pid):
            return False
        argv = read_cmdline(pid)
        return bool(argv) and check(argv or [])

    @staticmethod
    def children_of(pids: set[int]) -> list[int]:
        found = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                fields = _stat_fields(entry.name)
                if fields and int(fields[1]) in pids:
                    found.append(int(entry.name))
        return found

    def stop(self, pids: Sequence[int], what: str, timeout: float) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; raises if something survives SIGKILL."""
        pids = [p for p in pids if self.alive(p)]
        if not pids:
            return
        log.info("stopping %s (pid %s)", what, ", ".join(map(str, pids)))
        for p in pids:
            _signal(p, signal.SIGTERM)
        if wait_until(lambda: not any(self.alive(p) for p in pids), timeout):
            return
        log.warning("%s did not exit within %.0fs of SIGTERM, sending SIGKILL", what, timeout)
        self.kill(pids, what)

    def kill(self, pids: Sequence[int], what: str, timeout: float = 10.0) -> None:
        for p in pids:
            _signal(p, signal.SIGKILL)
        if not wait_until(lambda: not any(self.alive(p) for p in pids), timeout):
            left = [p for p in pids if self.alive(p)]
            raise errors.CtrError(f"{what} (pid {', '.join(map(str, left))}) survived SIGKILL")


__all__ = ["ProcessTable", "arg_value", "daemon_env", "read_cmdline", "wait_until"]
