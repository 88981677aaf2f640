"""Mount containerd snapshots on the host, so Python can read (and write) a container's files.

``mount_snapshot(service, snapshotter, key)`` returns ``(dir, unmount)``;
``mount_container_snapshot(service, container_id)`` does it for a container's active snapshot and
returns a :class:`~ctr_magic.types.MountedSnapshot`. The mount calls themselves are in
:mod:`ctr_magic.hostmount` (overlay and bind mounts, as containerd's snapshotters return them).
``unmount`` is idempotent; a mount that fails leaves nothing mounted and no temporary directory behind.

Read-only mounts: a committed snapshot is mounted through a temporary View snapshot (removed again
on unmount); an active one is mounted with its upper directory stacked as the top lower layer of a
read-only overlay (or as a read-only bind mount), so the container's files cannot change through it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from typing import Any, Optional

from .. import errors
from ..constants import MOUNT_DIR_PREFIX, VIEW_SNAPSHOT_PREFIX
from ..hostmount import is_mount_point, mount_all, unmount
from ..types import MountedSnapshot, MountInfo

log = logging.getLogger(__name__)


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise errors.FailedPrecondition(
            f"{what}: mounting needs root (this process runs as uid {os.geteuid()})",
            hint="run the kernel/script as root, or use snapshot_mounts() and mount as root yourself",
        )


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
                with contextlib.suppress(errors.NotFound):
                    self.service.remove_snapshot(self.snapshotter, self.view_key)
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


__all__ = [
    "mount_container_snapshot",
    "mount_snapshot",
    "read_only_mounts",
]
