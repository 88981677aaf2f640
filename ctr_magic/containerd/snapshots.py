"""Snapshots of DefaultService: commit, list (with disk usage), prepare, view, mounts, remove,
containers on an existing snapshot, and checkpoints (named versions of a container's files).

Snapshots ctr-magic makes on the caller's behalf (prepare, commit, checkpoint versions) carry
containerd's ``gc.root`` label, as ``ctr snapshots prepare/commit`` do: nothing else refers to
them, and without it garbage collection would take them. Remove them with ``remove_snapshot``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Optional, TypeVar

from .. import errors
from ..constants import LABEL_CHECKPOINT_CONTAINER, LABEL_CHECKPOINT_VERSION
from ..types import (
    ContainerInfo,
    CreateContainerRequest,
    MountInfo,
    SnapshotCommitResult,
    SnapshotInfo,
)
from .containers import ContainersPart, ExistingSnapshot
from .convert import to_datetime
from .pb import snapshots_pb2, task_pb2
from .runtime_base import Runtime
from .snapshotstore import gc_root_labels

log = logging.getLogger(__name__)

KINDS = {
    snapshots_pb2.VIEW: "view",
    snapshots_pb2.ACTIVE: "active",
    snapshots_pb2.COMMITTED: "committed",
}
_USAGE_WORKERS = 8
_T = TypeVar("_T")


def _require(call: str, **values: str) -> None:
    """InvalidArgument naming every empty argument of *call*."""
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise errors.InvalidArgument(f"{call}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required",
                                     hint="list_snapshots(snapshotter) shows the existing keys")


def _not_found(message: str, snapshotter: str) -> errors.NotFound:
    return errors.NotFound(message, hint=f"list_snapshots({snapshotter!r}) shows the keys")


def _unknown_snapshotter(exc: errors.InvalidArgument, snapshotter: str) -> errors.InvalidArgument:
    if "snapshotter not loaded" not in exc.message:
        return exc
    return errors.InvalidArgument(f"snapshotter {snapshotter!r} is not loaded in containerd",
                                  hint="use one it has, e.g. overlayfs or native (plugins() lists them)")


def _mount_infos(mounts: Any) -> list[MountInfo]:
    return [MountInfo(type=m.type, source=m.source, options=list(m.options)) for m in mounts]


def snapshot_info(info: snapshots_pb2.Info, size: int = 0, inodes: int = 0) -> SnapshotInfo:
    return SnapshotInfo(
        name=info.name,
        parent=info.parent,
        kind=KINDS.get(info.kind, "unknown"),
        created=to_datetime(info, "created_at"),
        updated=to_datetime(info, "updated_at"),
        labels=dict(info.labels),
        size=size,
        inodes=inodes,
    )


def checkpoint_name(container_id: str, version: str) -> str:
    """The committed snapshot holding *version* of *container_id*: ``<container>@<version>``."""
    return f"{container_id}@{version}"


class SnapshotsPart:
    """The five snapshot methods of the contract, plus stat/view/remove/usage and checkpoint.

    Containers on an existing snapshot are made by the containers part (*containers*).
    """

    def __init__(self, runtime: Runtime, containers: ContainersPart) -> None:
        self.runtime = runtime
        self.store = runtime.snapshots
        self.containers = containers

    def _snapshotter(self, snapshotter: str) -> str:
        return snapshotter or self.runtime.snapshotter

    @staticmethod
    def _known(snapshotter: str, call: Callable[[], _T]) -> _T:
        """Run one Snapshots call; an unknown snapshotter becomes one clear InvalidArgument."""
        try:
            return call()
        except errors.InvalidArgument as exc:
            raise _unknown_snapshotter(exc, snapshotter) from None

    # -- the contract ------------------------------------------------------------------------------
    def commit_snapshot(self, snapshotter: str, name: str, key: str) -> None:
        """Commit active snapshot *key* as *name* (the active key is gone afterwards)."""
        _require("commit_snapshot", snapshotter=snapshotter, name=name, key=key)
        self._commit(snapshotter, name, key, gc_root_labels())

    def _commit(self, snapshotter: str, name: str, key: str, labels: dict[str, str]) -> None:
        what = f"committing snapshot {key!r} as {name!r} in {snapshotter}"
        try:
            self._known(snapshotter, lambda: self.store.commit(snapshotter, name, key, labels=labels, what=what))
        except errors.AlreadyExists:
            raise errors.AlreadyExists(f"{what}: a snapshot named {name!r} already exists",
                                       hint="choose another name; the active snapshot is unchanged") from None
        except errors.NotFound:
            raise _not_found(f"{what}: no active snapshot {key!r}", snapshotter) from None
        except errors.FailedPrecondition as exc:
            raise errors.FailedPrecondition(f"{exc.message}", hint="only an active snapshot can be committed") \
                from None
        log.info("committed snapshot %s as %s (%s)", key, name, snapshotter)

    def prepare_snapshot(self, snapshotter: str, key: str, parent: str) -> None:
        """Prepare a new active snapshot *key* on top of committed snapshot *parent*."""
        _require("prepare_snapshot", snapshotter=snapshotter, key=key, parent=parent)
        self._prepare(snapshotter, key, parent, gc_root_labels())

    def _prepare(self, snapshotter: str, key: str, parent: str, labels: dict[str, str], *,
                 lease: str = "") -> list[MountInfo]:
        what = f"preparing snapshot {key!r} from {parent!r} in {snapshotter}"
        try:
            mounts = self._known(snapshotter, lambda: self.store.prepare(snapshotter, key, parent, labels=labels,
                                                                          what=what, lease=lease))
        except errors.AlreadyExists:
            raise errors.AlreadyExists(f"{what}: snapshot {key!r} already exists",
                                       hint="choose another key, or remove_snapshot() the old one") from None
        except errors.NotFound:
            raise errors.NotFound(f"{what}: parent snapshot {parent!r} does not exist",
                                  hint=f"list_snapshots({snapshotter!r}) shows the committed snapshots") from None
        except errors.InvalidArgument as exc:
            if "not loaded" in exc.message:
                raise
            raise errors.InvalidArgument(exc.message, hint="the parent must be a committed snapshot") from None
        log.info("prepared snapshot %s from %s (%s)", key, parent, snapshotter)
        return _mount_infos(mounts)

    def snapshot_mounts(self, snapshotter: str, key: str) -> list[MountInfo]:
        """How to mount active or view snapshot *key* (what ``ctr snapshots mounts`` prints)."""
        _require("snapshot_mounts", snapshotter=snapshotter, key=key)
        what = f"mounts of snapshot {key!r} in {snapshotter}"
        try:
            mounts = self._known(snapshotter, lambda: self.store.mounts(snapshotter, key, what=what))
        except errors.NotFound:
            raise _not_found(f"{what}: snapshot {key!r} does not exist", snapshotter) from None
        except errors.FailedPrecondition:
            raise errors.FailedPrecondition(
                f"{what}: {key!r} is committed; only active and view snapshots have mounts",
                hint="view it with view_snapshot(), or mount it with mount_snapshot()") from None
        return _mount_infos(mounts)

    def list_snapshots(self, snapshotter: str, *, usage: bool = True) -> list[SnapshotInfo]:
        """Every snapshot of *snapshotter* in this namespace, with disk usage unless ``usage=False``."""
        _require("list_snapshots", snapshotter=snapshotter)
        infos = self._known(snapshotter, lambda: list(self.store.infos(snapshotter,
                                                                          what=f"listing snapshots of {snapshotter}")))
        if not usage or not infos:
            return [snapshot_info(i) for i in infos]
        with ThreadPoolExecutor(max_workers=min(_USAGE_WORKERS, len(infos))) as pool:
            usages = list(pool.map(lambda i: self._usage_or_zero(snapshotter, i.name), infos))
        return [snapshot_info(i, *u) for i, u in zip(infos, usages, strict=True)]

    def create_container_from_snapshot(self, req: CreateContainerRequest) -> ContainerInfo:
        """Create a container whose root filesystem is an existing snapshot.

        ``snapshot_id`` names an active snapshot (used as it is) or a committed one (a fresh active
        snapshot, keyed by the container id, is prepared on it). ``image_ref`` supplies the process
        config (entrypoint, env, user...), as for create_container.
        """
        if req is None:
            raise errors.InvalidArgument("create_container_from_snapshot needs a CreateContainerRequest")
        _require("create_container_from_snapshot", id=req.id, snapshot_id=req.snapshot_id, image_ref=req.image_ref)
        snapshotter = self._snapshotter(req.snapshotter)
        self.containers.check_new_container(req.id)
        source = self.stat_snapshot(snapshotter, req.snapshot_id)
        committed = source.kind == "committed"
        if not committed:
            self._check_snapshot_unused(snapshotter, req.snapshot_id)
        # The image supplies the process config only: its layers are not used.
        image = self.containers.image_for_container(req.image_ref, snapshotter)
        return self.containers.build(req, image, snapshotter, req.id if committed else source.name,
                                     existing=ExistingSnapshot(source.name, committed))

    def _check_snapshot_unused(self, snapshotter: str, key: str) -> None:
        for other in self.containers.list_containers():
            if other.snapshot_key == key and (other.snapshotter or self.runtime.snapshotter) == snapshotter:
                raise errors.FailedPrecondition(
                    f"snapshot {key!r} is already the root filesystem of container {other.id!r}",
                    hint=f"checkpoint that container, or prepare_snapshot({snapshotter!r}, NEW_KEY, PARENT) "
                    "for a new one")

    # -- more snapshot calls -----------------------------------------------------------------------
    def stat_snapshot(self, snapshotter: str, key: str) -> SnapshotInfo:
        _require("stat_snapshot", snapshotter=snapshotter, key=key)
        what = f"snapshot {key!r} in {snapshotter}"
        try:
            info = self._known(snapshotter, lambda: self.store.stat(snapshotter, key, what=what))
        except errors.NotFound:
            raise _not_found(f"{what} does not exist", snapshotter) from None
        return snapshot_info(info)

    def snapshot_exists(self, snapshotter: str, key: str) -> bool:
        try:
            self.stat_snapshot(snapshotter, key)
        except errors.NotFound:
            return False
        return True

    def snapshot_usage(self, snapshotter: str, key: str) -> tuple[int, int]:
        """(bytes, inodes) the snapshot uses on disk (its own layer only)."""
        _require("snapshot_usage", snapshotter=snapshotter, key=key)
        what = f"disk usage of snapshot {key!r} in {snapshotter}"
        return self._known(snapshotter, lambda: self.store.usage(snapshotter, key, what=what))

    def _usage_or_zero(self, snapshotter: str, key: str) -> tuple[int, int]:
        try:
            return self.snapshot_usage(snapshotter, key)
        except errors.NotFound:  # removed while we were listing
            return 0, 0

    def view_snapshot(self, snapshotter: str, key: str, parent: str, *,
                      labels: Optional[dict[str, str]] = None, lease: str = "") -> list[MountInfo]:
        """A read-only View snapshot *key* of committed *parent*; returns its mounts.

        Without a lease it is labelled as a GC root: remove it with remove_snapshot() when done.
        """
        _require("view_snapshot", snapshotter=snapshotter, key=key, parent=parent)
        what = f"viewing snapshot {parent!r} as {key!r} in {snapshotter}"
        all_labels = dict(labels or {}) if lease else gc_root_labels(labels)
        try:
            mounts = self._known(snapshotter, lambda: self.store.view(snapshotter, key, parent, labels=all_labels,
                                                                       what=what, lease=lease))
        except errors.NotFound:
            raise _not_found(f"{what}: snapshot {parent!r} does not exist", snapshotter) from None
        except errors.AlreadyExists:
            raise errors.AlreadyExists(f"{what}: snapshot {key!r} already exists") from None
        return _mount_infos(mounts)

    def remove_snapshot(self, snapshotter: str, key: str) -> None:
        """Remove snapshot *key*; FailedPrecondition while other snapshots are built on it."""
        _require("remove_snapshot", snapshotter=snapshotter, key=key)
        what = f"removing snapshot {key!r} from {snapshotter}"
        try:
            self._remove(snapshotter, key, what)
        except errors.FailedPrecondition:
            children = sorted(s.name for s in self.list_snapshots(snapshotter, usage=False) if s.parent == key)
            if children:
                shown = ", ".join(children[:3]) + (f" and {len(children) - 3} more" if len(children) > 3 else "")
                raise errors.FailedPrecondition(
                    f"{what}: {shown} {'is' if len(children) == 1 else 'are'} built on it",
                    hint="remove those (or their containers) first") from None
            removed = False
            if self._clear_dangling_child(snapshotter, key):
                with contextlib.suppress(errors.FailedPrecondition):  # the lost child had another name
                    self._remove(snapshotter, key, what)
                    removed = True
            if not removed:
                raise errors.FailedPrecondition(
                    f"{what}: containerd still records a child snapshot of it that no longer exists",
                    hint=f"a containerd 1.6 garbage-collection defect; if you know the child's key, "
                         f"`ctr snapshots prepare KEY {key}` then `ctr snapshots rm KEY` clears it") from None
        log.info("removed snapshot %s (%s)", key, snapshotter)

    def _remove(self, snapshotter: str, key: str, what: str) -> None:
        try:
            self._known(snapshotter, lambda: self.store.remove(snapshotter, key, what=what))
        except errors.NotFound:
            raise errors.NotFound(f"{what}: it does not exist") from None

    def _clear_dangling_child(self, snapshotter: str, key: str) -> bool:
        """Clear a child link containerd 1.6's garbage collector left behind; True if one was tried.

        The collector deletes a snapshot without unlinking it from its parent. Making a snapshot of
        the same name on the parent and removing it again clears the link, but only the name is
        needed and containerd does not tell it. For a checkpoint version it is most likely the
        container's own key (its active snapshot is prepared on the newest version).
        """
        candidate = self.stat_snapshot(snapshotter, key).labels.get(LABEL_CHECKPOINT_CONTAINER, "")
        if not candidate or self.snapshot_exists(snapshotter, candidate):
            return False
        # A GC root for the moment it exists, so the collector cannot take it (and leave the link) again.
        self._prepare(snapshotter, candidate, key, gc_root_labels())
        self._remove(snapshotter, candidate, f"clearing the dangling child link {candidate!r} of snapshot {key!r}")
        log.warning("cleared a dangling child link %s of snapshot %s (containerd 1.6 garbage collection)",
                    candidate, key)
        return True

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint(self, container_id: str, version: str) -> SnapshotCommitResult:
        """Save a stopped container's files as a named version and carry on from it.

        The container's active snapshot is committed as ``<container>@<version>`` (kept until
        removed: earlier versions stay available for new containers), and a fresh active
        snapshot under the container's old key is prepared on top of it, so the container's
        next start continues from this version. A stopped task is deleted first; a running one
        is refused (stop it first).
        """
        _require("checkpoint", container_id=container_id, version=version)
        record = self.runtime.container_record(container_id)
        if not record.snapshot_key:
            raise errors.FailedPrecondition(f"container {container_id!r} has no snapshot to checkpoint")
        snapshotter = record.snapshotter or self.runtime.snapshotter
        key = record.snapshot_key
        process = self.runtime.task_process(container_id)
        if process is not None:
            if process.status != task_pb2.STOPPED:
                state = task_pb2.Status.Name(process.status).lower()
                raise errors.FailedPrecondition(
                    f"checkpoint of container {container_id!r}: its task is {state} (pid {process.pid})",
                    hint="stop it first (stop_container); a checkpoint needs the files at rest")
            # The exited task still holds the root filesystem mount; it must go before the commit.
            self.runtime.remove_task(container_id)
        name = checkpoint_name(container_id, version)
        if self.snapshot_exists(snapshotter, name):
            raise errors.AlreadyExists(f"checkpoint {version!r} of container {container_id!r} already exists "
                                       f"(snapshot {name!r})", hint="choose another version name")
        labels = gc_root_labels({LABEL_CHECKPOINT_CONTAINER: container_id, LABEL_CHECKPOINT_VERSION: version})
        self._commit(snapshotter, name, key, labels)
        try:
            self._prepare(snapshotter, key, name, {})
        except Exception as exc:
            raise errors.CtrError(
                f"checkpoint {version!r} of container {container_id!r} was saved as {name!r}, but preparing the "
                f"container's new snapshot {key!r} failed ({exc})",
                hint=f"prepare_snapshot({snapshotter!r}, {key!r}, {name!r}) repairs it") from None
        log.info("checkpoint %s of container %s saved as snapshot %s", version, container_id, name)
        return SnapshotCommitResult(version_snapshot_name=name, active_snapshot_name=key)

    def list_checkpoints(self, container_id: str = "", snapshotter: str = "") -> list[SnapshotInfo]:
        """Checkpoint versions (of one container, or all), oldest first."""
        snapshotter = self._snapshotter(snapshotter)
        out = [s for s in self.list_snapshots(snapshotter)
               if LABEL_CHECKPOINT_VERSION in s.labels
               and (not container_id or s.labels.get(LABEL_CHECKPOINT_CONTAINER) == container_id)]
        return sorted(out, key=lambda s: s.created or datetime.min.replace(tzinfo=timezone.utc))


__all__ = ["SnapshotsPart", "checkpoint_name", "snapshot_info"]
