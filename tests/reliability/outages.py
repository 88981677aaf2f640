"""Killing and restarting the daemons of a private environment, and measuring the recovery."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from ctr_magic import errors
from ctr_magic.daemon import Environment, find_binary
from ctr_magic.testimages import busybox_path


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_daemon(pid: int, what: str) -> None:
    """SIGKILL, as a crash would; return once it is gone."""
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), 20, f"{what} (pid {pid}) to die")


def kill_containerd(env: Environment) -> int:
    info = env.status()
    assert info is not None, "the environment is not running"
    kill_daemon(info.containerd_pid, "containerd")
    return info.containerd_pid


def restart(env: Environment) -> float:
    """``up`` again; the seconds it took (containerd answers when it returns)."""
    started = time.monotonic()
    env.up()
    return time.monotonic() - started


def first_success_after(call: Callable[[], Any], timeout: float = 60.0) -> float:
    """Seconds until *call* first succeeds, calling it back to back (Unavailable means not yet)."""
    started = time.monotonic()
    while True:
        try:
            call()
            return time.monotonic() - started
        except errors.Unavailable:
            if time.monotonic() - started > timeout:
                raise
            time.sleep(0.01)


def outage(env: Environment, seconds: float, call: Callable[[], Any], every: float = 2.0) -> list[str]:
    """Kill containerd, make *call* every *every* seconds for *seconds*, restart it; the errors seen."""
    kill_containerd(env)
    seen = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            call()
            seen.append("succeeded while containerd was down")
        except errors.Unavailable as exc:
            seen.append(str(exc))
        time.sleep(min(every, max(0.0, end - time.monotonic())))
    restart(env)
    return seen


REQUIRED_BINARIES = ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "docker-registry")


def require_host() -> None:
    """Skip (not fail) where the private environment cannot run at all."""
    if os.geteuid() != 0:
        pytest.skip("reliability tests need root (containerd and runc)")
    try:
        for name in REQUIRED_BINARIES:
            find_binary(name)
        busybox_path()
    except errors.Unavailable as exc:
        pytest.skip(str(exc))
