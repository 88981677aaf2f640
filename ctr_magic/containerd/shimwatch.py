"""Whether the runc shim has finished writing a task's log file.

The shim copies the task's stdout and stderr pipes into the log file in goroutines of its own, and
containerd reports the task's exit without waiting for them: the last bytes can land after the exit
event. The shim closes the file when both copies are done, so a reader that wants the whole log waits
until the shim no longer holds it open. This looks at /proc, so it works when containerd runs on this
machine (as it must for the log file to be readable at all); when nothing can be seen, callers fall
back to waiting for the file to stop growing.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Optional

log = logging.getLogger(__name__)


def parent_pid(pid: int) -> Optional[int]:
    """The parent of a live process (for a task's init process: its shim), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name in parentheses may hold spaces or parentheses: fields start after the last ')'.
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[1]) if len(fields) > 1 else None


def find_shim(namespace: str, container_id: str) -> Optional[int]:
    """The pid of the shim serving *container_id* in *namespace*, found by its command line."""
    wanted = f"\0-namespace\0{namespace}\0-id\0{container_id}\0".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if b"containerd-shim" in cmdline.split(b"\0", 1)[0] and wanted in cmdline + b"\0":
            return int(entry)
    return None


def holds_open(pid: int, path: str) -> Optional[bool]:
    """Whether process *pid* has *path* open; None when that cannot be seen."""
    fd_dir = f"/proc/{pid}/fd"
    path = os.path.realpath(path)
    try:
        fds = os.listdir(fd_dir)
    except FileNotFoundError:
        return False  # the process is gone, and its files with it
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"{fd_dir}/{fd}") == path:
                return True
        except OSError:
            continue
    return False


def wait_until_closed(pid: int, path: str, deadline_s: float) -> bool:
    """Poll until *pid* no longer holds *path* open; False on timeout or when it cannot be seen."""
    deadline = time.monotonic() + deadline_s
    interval = 0.002
    while time.monotonic() < deadline:
        held = holds_open(pid, path)
        if held is None:
            return False
        if not held:
            return True
        time.sleep(interval)
        interval = min(interval * 2, 0.05)
    log.warning("the shim (pid %d) still holds %s open %.0f s after the task exited", pid, path, deadline_s)
    return False
