"""mount(2) and umount2(2) on this host, and what /proc/self/mountinfo says is mounted.

The one place ctr-magic talks to the kernel about mounts: snapshot mounts
(:mod:`ctr_magic.containerd.mounts`), network namespace pins (:mod:`ctr_magic.containerd.network`)
and the embedded environment's teardown (:mod:`ctr_magic.env`) all come here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import logging
import os
import subprocess
import time
from collections.abc import Iterable, Sequence

from . import errors
from .types import MountInfo

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


@functools.cache
def _libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return lib


def mount_error(err: int, what: str) -> errors.CtrError:
    """The errno of a failed mount call as the matching one-line error."""
    text = os.strerror(err)
    if err == errno.EPERM:
        return errors.FailedPrecondition(f"{what}: {text}", hint="mounting needs root with CAP_SYS_ADMIN")
    if err == errno.ENOENT:
        return errors.NotFound(f"{what}: {text}")
    if err in (errno.EINVAL, errno.ENODEV):
        return errors.InvalidArgument(f"{what}: {text} (is the filesystem type supported here?)")
    return errors.CtrError(f"{what}: {text}")


def sys_mount(source: str, target: str, fstype: str, flags: int, data: str, what: str) -> None:
    """mount(2); a failure raises :func:`mount_error`'s error."""
    rc = _libc().mount(os.fsencode(source), os.fsencode(target), fstype.encode() if fstype else None,
                       flags, data.encode() if data else None)
    if rc != 0:
        raise mount_error(ctypes.get_errno(), what)


def umount2(target: str, flags: int = 0) -> int:
    """umount2(2); returns 0 or the errno (callers decide which errors matter)."""
    if _libc().umount2(os.fsencode(target), flags) == 0:
        return 0
    return ctypes.get_errno()


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
        sys_mount(mount.source, target, fstype, first, data_text, what)
        if flags & MS_BIND and flags & MS_RDONLY:
            try:
                sys_mount("", target, "", MS_REMOUNT | MS_BIND | MS_RDONLY | (flags & ~MS_REC), "", what)
            except BaseException:
                unmount(target)
                raise
    if propagation:
        try:
            sys_mount("", target, "", propagation, "", what)
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


def bind_mount(source: str, target: str, *, what: str = "") -> None:
    """Bind-mount *source* on *target* (used to keep a network namespace alive)."""
    sys_mount(source, target, "", MS_BIND, "", what or f"bind-mounting {source} on {target}")


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Every mount point this process sees (in /proc/self/mountinfo order)."""
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as fh:
        return [_unescape(line.split()[4]) for line in fh if line.strip()]


def is_mount_point(path: str) -> bool:
    return os.path.realpath(path) in mount_points()


def mounts_under(roots: Sequence[str | os.PathLike[str]], *, include_roots: bool = True) -> list[str]:
    """Mount points (from /proc/self/mountinfo) below (or, with ``include_roots``, at) any of ``roots``."""
    prefixes = [os.path.realpath(r) for r in roots]
    return [point for point in mount_points()
            if any((include_roots and point == p) or point.startswith(p + "/") for p in prefixes)]


def unmount(target: str, *, all_layers: bool = False) -> None:
    """Unmount *target*; "not mounted" is fine (idempotent). Busy mounts are retried, then detached."""
    deadline = time.monotonic() + _UNMOUNT_RETRY_SECONDS
    while True:
        err = umount2(target)
        if err == 0:
            if all_layers:
                continue
            return
        if err in (errno.EINVAL, errno.ENOENT):  # not (or no longer) a mount point
            return
        if err != errno.EBUSY:
            raise mount_error(err, f"unmounting {target}")
        if time.monotonic() >= deadline:
            log.warning("%s is busy; detaching it (it goes away when the last user closes it)", target)
            err = umount2(target, MNT_DETACH)
            if err not in (0, errno.EINVAL, errno.ENOENT):
                raise mount_error(err, f"detaching {target}")
            return
        time.sleep(0.05)


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
            err = umount2(point)
            if err in (errno.EBUSY, errno.EAGAIN):
                log.warning("%s busy, detaching lazily", point)
                err = umount2(point, MNT_DETACH)
            if err not in (0, errno.EINVAL, errno.ENOENT):
                log.warning("umount %s: %s", point, os.strerror(err))
            else:
                log.debug("unmounted %s", point)


__all__ = [
    "bind_mount",
    "is_mount_point",
    "mount_all",
    "mount_error",
    "mount_one",
    "mount_points",
    "mounts_under",
    "parse_options",
    "sys_mount",
    "umount2",
    "unmount",
    "unmount_all",
]
