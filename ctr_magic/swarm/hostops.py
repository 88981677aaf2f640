"""Processes and mounts a test-cluster node leaves on the host, found and removed.

A node is a dockerd started inside its own network namespace; dockerd starts its containerd,
containerd its shims, the shims the containers. Everything of a node is therefore either in the
node's network namespace or a descendant of a process that is (containers have namespaces of
their own). Mounts are found under the node's data and exec roots.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable

from ..env import processes

log = logging.getLogger(__name__)

MNT_DETACH = 2
CGROUP_ROOT = "/sys/fs/cgroup"


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """The environment's poll with a deadline, at the cluster's slower default pace."""
    return processes.wait_until(predicate, timeout, interval)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _parents() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    out[int(entry)] = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return out


def pids_in_netns(inode: int) -> list[int]:
    """Processes whose network namespace is the one with *inode*."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                    found.append(int(entry))
    return found


def with_descendants(roots: Iterable[int]) -> list[int]:
    """*roots* and every process below them, deepest first (so leaves are killed before parents)."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    order: list[int] = []
    seen: set[int] = set()

    def visit(pid: int) -> None:
        if pid in seen:
            return
        seen.add(pid)
        for child in children.get(pid, []):
            visit(child)
        order.append(pid)

    for root in roots:
        visit(root)
    return order


def docker_cgroups(pids: Iterable[int]) -> set[str]:
    """The cgroup directories (per hierarchy) of containers among *pids*: removed after the kill."""
    out: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, controllers, path = line.strip().split(":", 2)
                if "/docker/" not in path:
                    continue
                names = controllers.split(",") if controllers else ["unified"]
                for name in names:
                    name = name.removeprefix("name=")
                    out.add(os.path.join(CGROUP_ROOT, name, path.lstrip("/")))
    return out


def signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def kill_tree(roots: Iterable[int], what: str, timeout: float = 20.0) -> None:
    """SIGKILL *roots* and all their descendants; remove the container cgroups they leave."""
    pids = with_descendants(roots)
    if not pids:
        return
    cgroups = docker_cgroups(pids)
    log.info("killing %d process(es) of %s", len(pids), what)
    signal_all(pids, signal.SIGKILL)
    if not wait_until(lambda: not any(alive(p) for p in pids), timeout):
        log.warning("%s: processes still alive after SIGKILL: %s", what, [p for p in pids if alive(p)])
    for path in sorted(cgroups, key=len, reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(path)


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4].replace("\\040", " ") for line in f]


def mounts_under(roots: Iterable[str]) -> list[str]:
    prefixes = [os.path.realpath(r) for r in roots]
    return [p for p in mount_points() if any(p == r or p.startswith(r + "/") for r in prefixes)]


def unmount_all(roots: Iterable[str], timeout: float = 20.0) -> list[str]:
    """Unmount everything at or below *roots*, deepest first (lazily when busy); what is left."""
    roots = list(roots)
    libc = ctypes.CDLL(None, use_errno=True)
    deadline = time.monotonic() + timeout
    while True:
        points = mounts_under(roots)
        if not points or time.monotonic() > deadline:
            return points
        for point in sorted(set(points), key=lambda p: (p.count("/"), len(p)), reverse=True):
            if libc.umount2(os.fsencode(point), 0) != 0:
                err = ctypes.get_errno()
                if err in (errno.EBUSY, errno.EAGAIN):
                    libc.umount2(os.fsencode(point), MNT_DETACH)
                elif err not in (errno.EINVAL, errno.ENOENT):
                    log.warning("umount %s: %s", point, os.strerror(err))


__all__ = [
    "alive",
    "kill_tree",
    "mounts_under",
    "pids_in_netns",
    "signal_all",
    "unmount_all",
    "wait_until",
    "with_descendants",
]
