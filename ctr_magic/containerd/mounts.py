"""Mount containerd snapshots on the host, so Python can read (and write) a container's files.

``mount_snapshot(service, snapshotter, key)`` returns ``(dir, unmount)``;
``mount_container_snapshot(service, container_id)`` does it for a container's active snapshot and
returns a :class:`~ctr_magic.types.MountedSnapshot`. Mounts are made with mount(2) through libc
(overlay and bind mounts, as containerd's snapshotters return them). ``unmount`` is idempotent; a
mount that fails leaves nothing mounted and no temporary directory behind.

Read-only mounts: a committed snapshot is mounted through a temporary View snapshot (removed again
on unmount); an active one is mounted with its upper directory stacked as the top lower layer of a
read-only overlay (or as a read-only bind mount), so the container's files cannot change through it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Optional

from .. import errors
from ..constants import MOUNT_DIR_PREFIX, VIEW_SNAPSHOT_PREFIX
from ..types import MountedSnapshot, MountInfo

log = logging.getLogger(__name__)

# mount(2) flags (linux/mount.h).
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 0x2
_PROPAGATION = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE

# option -> (clear?, flag), as mount(8) and containerd read them; anything else is filesystem data.
_FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS), "atime": (True, MS_NOATIME), "bind": (False, MS_BIND),
    "defaults": (False, 0), "dev": (True, MS_NODEV), "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC), "exec": (True, MS_NOEXEC), "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME), "nodev": (False, MS_NODEV), "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC), "nomand": (True, MS_MANDLOCK), "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME), "nosuid": (False, MS_NOSUID), "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME), "remount": (False, MS_REMOUNT), "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY), "strictatime": (False, MS_STRICTATIME), "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
}
_PROPAGATION_OPTIONS: dict[str, int] = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC, "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
# The kernel copies at most one page of mount data.
_MAX_MOUNT_DATA = 4095
_UNMOUNT_RETRY_SECONDS = 2.0

_libc: Optional[ctypes.CDLL] = None


def _get_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc = lib
    return _libc


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise errors.FailedPrecondition(
            f"{what}: mounting needs root (this process runs as uid {os.geteuid()})",
            hint="run the kernel/script as root, or use snapshot_mounts() and mount as root yourself",
        )


def _mount_error(err: int, what: str) -> errors.CtrError:
    text = os.strerror(err)
    if err == errno.EPERM:
        return errors.FailedPrecondition(f"{what}: {text}", hint="mounting needs root with CAP_SYS_ADMIN")
    if err == errno.ENOENT:
        return errors.NotFound(f"{what}: {text}")
    if err in (errno.EINVAL, errno.ENODEV):
        return errors.InvalidArgument(f"{what}: {text} (is the filesystem type supported here?)")
    return errors.CtrError(f"{what}: {text}")


def _sys_mount(source: str, target: str, fstype: str, flags: int, data: str, what: str) -> None:
    rc = _get_libc().mount(os.fsencode(source), os.fsencode(target), fstype.encode() if fstype else None,
                           flags, data.encode() if data else None)
    if rc != 0:
        raise _mount_error(ctypes.get_errno(), what)


def parse_options(options: Iterable[str]) -> tuple[int, int, list[str]]:
    """Split mount options into (flags, propagation flags, filesystem data options)."""
    flags = 0
    propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAG_OPTIONS:
            clear, flag = _FLAG_OPTIONS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in _PROPAGATION_OPTIONS:
            propagation |= _PROPAGATION_OPTIONS[opt]
        elif opt:
            data.append(opt)
    return flags, propagation, data


def _mount_long_overlay(mount: MountInfo, target: str, flags: int, data: list[str], what: str) -> None:
    """Overlay data over a page long: mount(8) in a child whose cwd shortens the layer paths.

    (The same trick containerd uses; done in a child so this process's cwd never changes.)
    """
    dirs = [p for opt in data if "=" in opt for p in opt.split("=", 1)[1].split(":") if p.startswith("/")]
    common = os.path.commonpath(dirs) if dirs else "/"
    short: list[str] = []
    for opt in data:
        key, sep, value = opt.partition("=")
        if sep and key in ("lowerdir", "upperdir", "workdir"):
            value = ":".join(os.path.relpath(p, common) if p.startswith("/") else p for p in value.split(":"))
        short.append(f"{key}{sep}{value}")
    if "ro" not in short and flags & MS_RDONLY:
        short.append("ro")
    proc = subprocess.run(["mount", "-t", mount.type, "-o", ",".join(short), mount.source or "overlay", target],
                          cwd=common, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise errors.CtrError(f"{what}: {proc.stderr.strip() or f'mount exited {proc.returncode}'}")


def mount_one(mount: MountInfo, target: str, *, what: str = "") -> None:
    """mount(2) one containerd mount (overlay, bind, tmpfs...) on *target*."""
    what = what or f"mounting {mount.type} on {target}"
    flags, propagation, data = parse_options(mount.options)
    fstype = "" if mount.type == "bind" else mount.type
    if mount.type == "bind":
        flags |= MS_BIND
    data_text = ",".join(data)
    if fstype == "overlay" and len(data_text) > _MAX_MOUNT_DATA:
        _mount_long_overlay(mount, target, flags, data, what)
    else:
        # A bind mount ignores MS_RDONLY on creation: bind first, then remount read-only.
        first = flags & ~MS_RDONLY if flags & MS_BIND else flags
        _sys_mount(mount.source, target, fstype, first, data_text, what)
        if flags & MS_BIND and flags & MS_RDONLY:
            try:
                _sys_mount("", target, "", MS_REMOUNT | MS_BIND | MS_RDONLY | (flags & ~MS_REC), "", what)
            except BaseException:
                unmount(target)
                raise
    if propagation:
        try:
            _sys_mount("", target, "", propagation, "", what)
        except BaseException:
            unmount(target)
            raise


def mount_all(mounts: list[MountInfo], target: str, *, what: str = "") -> None:
    """Mount every entry on *target* in order; on failure, unmount what was mounted and re-raise."""
    done = 0
    try:
        for mount in mounts:
            mount_one(mount, target, what=what)
            done += 1
    except BaseException:
        for _ in range(done):
            unmount(target)
        raise


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Every mount point this process sees (in /proc/self/mountinfo order)."""
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as fh:
        return [_unescape(line.split()[4]) for line in fh if line.strip()]


def is_mount_point(path: str) -> bool:
    return os.path.realpath(path) in mount_points()


def unmount(target: str, *, all_layers: bool = False) -> None:
    """Unmount *target*; "not mounted" is fine (idempotent). Busy mounts are retried, then detached."""
    libc = _get_libc()
    deadline = time.monotonic() + _UNMOUNT_RETRY_SECONDS
    path = os.fsencode(target)
    while True:
        if libc.umount2(path, 0) == 0:
            if all_layers:
                continue
            return
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):  # not (or no longer) a mount point
            return
        if err != errno.EBUSY:
            raise _mount_error(err, f"unmounting {target}")
        if time.monotonic() >= deadline:
            log.warning("%s is busy; detaching it (it goes away when the last user closes it)", target)
            if libc.umount2(path, MNT_DETACH) != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
                raise _mount_error(ctypes.get_errno(), f"detaching {target}")
            return
        time.sleep(0.05)


def read_only_mounts(mounts: list[MountInfo]) -> list[MountInfo]:
    """The same file tree, read-only: overlay upper layer stacked as a lower one; binds with ``ro``."""
    out = []
    for mount in mounts:
        options = [o for o in mount.options if o not in ("rw", "ro")]
        if mount.type == "overlay":
            upper = lower = ""
            rest = []
            for opt in options:
                key, _, value = opt.partition("=")
                if key == "upperdir":
                    upper = value
                elif key == "lowerdir":
                    lower = value
                elif key != "workdir":
                    rest.append(opt)
            layers = ":".join(p for p in (upper, lower) if p)
            if ":" not in layers:
                # overlayfs needs two lower layers without an upper one: a lone layer is bind-mounted.
                out.append(MountInfo(type="bind", source=layers, options=["ro", "rbind"]))
                continue
            out.append(MountInfo(type="overlay", source=mount.source, options=["ro", *rest, f"lowerdir={layers}"]))
        else:
            out.append(MountInfo(type=mount.type, source=mount.source, options=["ro", *options]))
    return out


class _Mounted:
    """What one mount_snapshot call made; ``unmount()`` undoes all of it, once."""

    def __init__(self, service: Any, snapshotter: str, directory: str) -> None:
        self.service = service
        self.snapshotter = snapshotter
        self.dir = directory
        self.view_key = ""
        self.mounted = False
        self._lock = threading.Lock()
        self._done = False

    def unmount(self) -> None:
        with self._lock:
            if self._done:
                return
            if self.mounted:
                unmount(self.dir, all_layers=True)
                self.mounted = False
            try:
                os.rmdir(self.dir)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if is_mount_point(self.dir):
                    raise errors.CtrError(f"{self.dir} is still mounted ({exc})") from None
                shutil.rmtree(self.dir, ignore_errors=True)
            if self.view_key:
                try:
                    self.service.remove_snapshot(self.snapshotter, self.view_key)
                except errors.NotFound:
                    pass
                self.view_key = ""
            self._done = True
            log.debug("unmounted %s", self.dir)


def _snapshot_kind(service: Any, snapshotter: str, key: str) -> str:
    stat = getattr(service, "stat_snapshot", None)
    return stat(snapshotter, key).kind if stat is not None else ""


def mount_snapshot(
    service: Any,
    snapshotter: str,
    key: str,
    *,
    read_only: bool = False,
    parent_dir: Optional[str] = None,
) -> tuple[str, Callable[[], None]]:
    """Mount snapshot *key* of *snapshotter* on a new temporary directory.

    Returns ``(dir, unmount)``; ``unmount()`` may be called any number of times. Committed
    snapshots are always mounted read-only (through a temporary View snapshot).
    """
    if not snapshotter:
        raise errors.InvalidArgument("mount_snapshot: snapshotter is empty", hint="e.g. overlayfs")
    if not key:
        raise errors.InvalidArgument("mount_snapshot: snapshot key is empty", hint="list_snapshots() shows the keys")
    what = f"mounting snapshot {key!r} ({snapshotter})"
    _require_root(what)
    kind = _snapshot_kind(service, snapshotter, key)  # NotFound for an unknown key, before anything is made
    directory = tempfile.mkdtemp(prefix=MOUNT_DIR_PREFIX, dir=parent_dir)
    made = _Mounted(service, snapshotter, directory)
    try:
        if kind == "committed":
            made.view_key = f"{VIEW_SNAPSHOT_PREFIX}{secrets.token_hex(8)}"
            mounts = service.view_snapshot(snapshotter, made.view_key, key)
        else:
            mounts = service.snapshot_mounts(snapshotter, key)
            if read_only:
                mounts = read_only_mounts(mounts)
        if not mounts:
            raise errors.CtrError(f"{what}: the snapshotter returned no mounts")
        mount_all(mounts, directory, what=what)
        made.mounted = True
    except BaseException:
        made.unmount()
        raise
    log.info("mounted snapshot %s (%s) on %s%s", key, snapshotter, directory,
             " read-only" if read_only or kind == "committed" else "")
    return directory, made.unmount


def mount_container_snapshot(
    service: Any,
    container_id: str,
    *,
    read_only: bool = False,
    parent_dir: Optional[str] = None,
) -> MountedSnapshot:
    """Mount a container's active snapshot (its root filesystem) on a new temporary directory."""
    if not container_id:
        raise errors.InvalidArgument("mount_container_snapshot: container id is empty")
    _require_root(f"mounting the snapshot of container {container_id!r}")
    info = service.get_container(container_id)
    if not info.snapshot_key:
        raise errors.FailedPrecondition(f"container {container_id!r} has no snapshot",
                                        hint="it was created without a root filesystem snapshot")
    directory, undo = mount_snapshot(service, info.snapshotter or service.snapshotter, info.snapshot_key,
                                     read_only=read_only, parent_dir=parent_dir)
    return MountedSnapshot(dir=directory, info=info, unmount=undo)


def bind_mount(source: str, target: str, *, what: str = "") -> None:
    """Bind-mount *source* on *target* (used to keep a network namespace alive)."""
    _sys_mount(source, target, "", MS_BIND, "", what or f"bind-mounting {source} on {target}")


__all__ = [
    "bind_mount",
    "is_mount_point",
    "mount_all",
    "mount_container_snapshot",
    "mount_one",
    "mount_points",
    "mount_snapshot",
    "parse_options",
    "read_only_mounts",
    "unmount",
]
