"""Read a few files (/etc/passwd, /etc/group) of a snapshot by mounting it read-only for a moment.

containerd's own client does the same when it resolves a user name for a spec: it mounts the
snapshot read-only on a temporary directory, reads, unmounts. The read-only mounts and the
mount calls are those of :mod:`ctr_magic.hostmount`. Needs root and the daemon's host, like FIFO I/O.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from .. import errors
from ..constants import ROOTFS_PEEK_PREFIX
from ..hostmount import mount_all, unmount
from .interrupts import deferred_interrupts
from .mounts import read_only_mounts
from .userdb import DirRootfs

log = logging.getLogger(__name__)


@contextlib.contextmanager
def mounted_read_only(mounts: Sequence[Any], what: str) -> Iterator[DirRootfs]:
    """Mount *mounts* (containerd ``Mount`` messages or MountInfo) read-only on a temp dir; yield its files."""
    if len(mounts) != 1:
        raise errors.NotSupported(f"{what}: cannot read files from {len(mounts)} stacked mounts")
    with deferred_interrupts():  # a Ctrl-C between making the directory and the try would leave it
        target = tempfile.mkdtemp(prefix=ROOTFS_PEEK_PREFIX)
    try:
        mount_all(read_only_mounts(list(mounts)), target, what=f"{what}: mounting the snapshot to read it")
        yield DirRootfs(target)
    finally:
        # Always (unmount is idempotent): a Ctrl-C right after the mount call, before any flag
        # could record it, left the peek mounted (fault trial create:2028001); and a Ctrl-C during
        # the unmount left the directory (create:2028014), so the cleanup runs with it deferred.
        with deferred_interrupts():
            unmount(target, all_layers=True)
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
