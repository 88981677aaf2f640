"""The snapshots one containerd build makes, every one under the build's lease.

A step prepares an active snapshot on its parent, changes it (a RUN container, copied files, a
new directory), has the Diff service write the change as a layer, and commits the active snapshot
itself under the layer's chain ID: the next step starts from it without unpacking anything.
Everything made here is held by the lease, so a failure or an interrupt leaves nothing behind that
garbage collection would not take; the active snapshots are removed at once as well.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator
from typing import Any

from .. import errors
from ..constants import LABEL_SNAPSHOT_REF, MEDIA_OCI_LAYER
from ..containerd.commit import diff_layer
from ..containerd.imagestore import chain_ids
from ..containerd.leases import Lease
from ..hostmount import mount_all, unmount
from ..registry.manifests import Descriptor
from ..types import MountInfo
from .overlaydiff import maybe_upper_layer

log = logging.getLogger(__name__)

#: Prefix of the keys of the build's own active snapshots and views.
KEY_PREFIX = "ctr-magic-build-"


def _infos(mounts: Any) -> list[MountInfo]:
    return [MountInfo(type=m.type, source=m.source, options=list(m.options)) for m in mounts]


class BuildSnapshots:
    """Snapshot and layer operations of one build (see module docstring), through the service's
    :class:`~ctr_magic.containerd.snapshotstore.SnapshotStore`, every call under the build's lease."""

    def __init__(self, service: Any, snapshotter: str, lease: str, build_id: str) -> None:
        self.svc = service
        self.client = service.client
        self.store = service.snapshot_store
        self.snapshotter = snapshotter
        self.lease = lease
        self.build_id = build_id
        self._count = 0

    def new_key(self, what: str) -> str:
        self._count += 1
        return f"{KEY_PREFIX}{self.build_id}-{self._count}-{what}"

    def exists(self, name: str) -> bool:
        return self.store.exists(self.snapshotter, name, lease=self.lease)

    def prepare(self, key: str, parent: str) -> list[MountInfo]:
        try:
            return _infos(self.store.prepare(self.snapshotter, key, parent, lease=self.lease,
                                             what=f"preparing build snapshot {key}"))
        except BaseException:
            self.remove(key)  # an interrupted Prepare may have made it all the same
            raise

    def view(self, key: str, parent: str) -> list[MountInfo]:
        try:
            return _infos(self.store.view(self.snapshotter, key, parent, lease=self.lease,
                                          what=f"viewing snapshot {parent}"))
        except BaseException:
            self.remove(key)
            raise

    def remove(self, key: str) -> None:
        try:
            self.store.remove_if_present(self.snapshotter, key, what=f"removing build snapshot {key}", timeout=60.0)
        except errors.CtrError as exc:
            log.warning("could not remove build snapshot %s: %s", key, exc)

    def commit(self, key: str, name: str) -> None:
        """Commit active *key* as *name*; when *name* exists already (the same change made before),
        the active snapshot is dropped and the existing one serves, held by the build's lease first:
        nothing else may reference it any more, and garbage collection could take it mid-build."""
        for _ in range(3):
            try:
                self.store.commit(self.snapshotter, name, key, labels={LABEL_SNAPSHOT_REF: name}, lease=self.lease,
                                  what=f"committing build snapshot {key} as {name}")
                return
            except errors.AlreadyExists:
                self.hold(name)
                if self.exists(name):
                    self.remove(key)
                    return
                # Collected between the two calls: commit ours under the name after all.
        raise errors.CtrError(f"committing build snapshot {key} as {name}: the name keeps coming and going")

    def hold(self, name: str) -> None:
        """Put an existing snapshot (a base image's top layer, a cached step) under the build's lease."""
        Lease(self.client, lease_id=self.lease).add_snapshot(self.snapshotter, name)

    def hold_content(self, digest: str) -> None:
        Lease(self.client, lease_id=self.lease).add_content(digest)

    # -- whole steps ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def active(self, parent: str, what: str) -> Iterator[tuple[str, list[MountInfo]]]:
        """An active snapshot on *parent* for the block; removed when the block raises."""
        key = self.new_key(what)
        mounts = self.prepare(key, parent)
        try:
            yield key, mounts
        except BaseException:
            self.remove(key)
            raise

    @contextlib.contextmanager
    def mounted(self, mounts: list[MountInfo], what: str) -> Iterator[str]:
        """*mounts* on a fresh host directory for the block."""
        target = tempfile.mkdtemp(prefix="ctr-magic-build-")
        try:
            mount_all(mounts, target, what=what)
            try:
                yield target
            finally:
                unmount(target)
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(target)

    @contextlib.contextmanager
    def mounted_view(self, parent: str, what: str) -> Iterator[str]:
        """Committed snapshot *parent* mounted read-only on a host directory for the block."""
        key = self.new_key("view")
        try:
            mounts = self.view(key, parent) if parent else []
            if not mounts:
                target = tempfile.mkdtemp(prefix="ctr-magic-build-empty-")
                try:
                    yield target
                finally:
                    os.rmdir(target)
                return
            with self.mounted(mounts, what) as target:
                yield target
        finally:
            if parent:
                self.remove(key)

    def finish_layer(self, key: str, mounts: list[MountInfo], parent: str, parent_diff_ids: list[str],
                     what: str) -> tuple[Descriptor, str, str]:
        """Diff active *key* against *parent*, commit it under the new chain ID: (layer, diff_id, chain)."""
        ref = f"ctr-magic-build-{self.build_id}-{secrets.token_hex(6)}"
        fast = maybe_upper_layer(self.svc, mounts, lease=self.lease, ref=ref)
        if fast is not None:
            layer, diff_id = fast
        else:
            layer, diff_id = self._diff_service_layer(mounts, parent, what, ref)
        chain = chain_ids([*parent_diff_ids, diff_id])[-1]
        self.commit(key, chain)
        return layer, diff_id, chain

    def _diff_service_layer(self, mounts: list[MountInfo], parent: str, what: str,
                            ref: str) -> tuple[Descriptor, str]:
        view = ""
        try:
            left: list[MountInfo] = []
            if parent:
                view = self.new_key("left")
                left = self.view(view, parent)
            return diff_layer(self.svc, left, mounts, lease=self.lease, what=what, ref=ref,
                              media_type=MEDIA_OCI_LAYER)
        finally:
            if view:
                self.remove(view)


__all__ = ["KEY_PREFIX", "BuildSnapshots"]
