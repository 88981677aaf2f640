"""Read a few files (/etc/passwd, /etc/group) of a snapshot by mounting it read-only for a moment.

containerd's own client does the same when it resolves a user name for a spec: it turns the
snapshot's mounts read-only (overlay without upper dir; a single lower dir as a read-only bind),
mounts them on a temporary directory, reads, unmounts. Needs root and the daemon's host, like
FIFO I/O.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from .. import errors
from ..constants import ROOTFS_PEEK_PREFIX
from .spec import DirRootfs

log = logging.getLogger(__name__)

MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MNT_DETACH = 0x2

_libc: Any = None


def _lib() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    rc = _lib().mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                      data.encode() if data else None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} {source} on {target}: {os.strerror(err)}")


def _umount(target: str) -> None:
    if _lib().umount2(target.encode(), 0) != 0:
        # Something still looks at it (it should not): detach so the directory can go.
        _lib().umount2(target.encode(), MNT_DETACH)


def read_only(mounts: Sequence[Any]) -> list[tuple[str, str, list[str]]]:
    """(type, source, options) of *mounts* turned read-only, as containerd's ``tryReadonlyMounts``."""
    out = []
    for m in mounts:
        options = [o for o in m.options if o not in ("rw", "ro")]
        if m.type == "overlay":
            lower = [o for o in options if o.startswith("lowerdir=")]
            keep = [o for o in options if not o.startswith(("upperdir=", "workdir=", "lowerdir="))]
            dirs = lower[0][len("lowerdir="):].split(":") if lower else []
            if len(dirs) == 1:
                out.append(("bind", dirs[0], ["rbind", "ro"]))
            elif dirs:
                out.append(("overlay", m.source, [*keep, f"lowerdir={':'.join(dirs)}", "ro"]))
            else:
                raise errors.CtrError(f"overlay mount {m.source} has no lower directory")
        else:
            out.append((m.type, m.source, [*options, "ro"]))
    return out


def _mount_one(type_: str, source: str, options: list[str], target: str) -> None:
    flags = 0
    data = []
    for opt in options:
        if opt == "ro":
            flags |= MS_RDONLY
        elif opt == "bind":
            flags |= MS_BIND
        elif opt == "rbind":
            flags |= MS_BIND | MS_REC
        else:
            data.append(opt)
    if flags & MS_BIND:
        _mount(source, target, "", flags & ~MS_RDONLY, "")
        if flags & MS_RDONLY:
            try:
                _mount("", target, "", MS_REMOUNT | MS_BIND | MS_RDONLY, "")
            except BaseException:
                _umount(target)
                raise
        return
    _mount(source, target, type_, flags, ",".join(data))


@contextlib.contextmanager
def mounted_read_only(mounts: Sequence[Any], what: str) -> Iterator[DirRootfs]:
    """Mount *mounts* (containerd ``Mount`` messages) read-only on a temp dir; yield its files."""
    if len(mounts) != 1:
        raise errors.NotSupported(f"{what}: cannot read files from {len(mounts)} stacked mounts")
    (type_, source, options), = read_only(mounts)
    target = tempfile.mkdtemp(prefix=ROOTFS_PEEK_PREFIX)
    mounted = False
    try:
        try:
            _mount_one(type_, source, options, target)
        except OSError as exc:
            hint = "ctr-magic must run as root on containerd's host" if os.geteuid() != 0 else ""
            raise errors.CtrError(f"{what}: cannot mount the snapshot to read it ({exc.strerror})",
                                  hint=hint) from None
        mounted = True
        yield DirRootfs(target)
    finally:
        if mounted:
            _umount(target)
        try:
            os.rmdir(target)
        except OSError:
            log.warning("could not remove %s", target, exc_info=True)


class PreloadedRootfs:
    """Files read once (while mounted) and served from memory afterwards."""

    def __init__(self, files: dict[str, bytes | None]) -> None:
        self._files = files

    def read(self, path: str) -> bytes | None:
        return self._files.get(path)


USER_FILES = ("/etc/passwd", "/etc/group")


def read_user_files(mounts: Sequence[Any], what: str) -> PreloadedRootfs:
    """/etc/passwd and /etc/group of a snapshot (None where missing)."""
    with mounted_read_only(mounts, what) as files:
        return PreloadedRootfs({path: files.read(path) for path in USER_FILES})
