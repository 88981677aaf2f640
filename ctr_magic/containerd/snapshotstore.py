"""The one place ctr-magic calls containerd's Snapshots service.

:class:`SnapshotStore` wraps each RPC once (prepare, commit, view, mounts, stat, usage, list,
remove, label update) with the request built from plain arguments, plus the small helpers every
caller needs: does a snapshot exist, remove one if it is there, keep one as a GC root. The
callers (containers, the snapshot methods, unpacking, commit) add their own error wording.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Optional

from google.protobuf import field_mask_pb2

from .. import errors
from ..constants import LABEL_GC_ROOT
from .client import CancelScope, ContainerdClient
from .pb import snapshots_pb2, snapshots_pb2_grpc


def gc_root_labels(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """containerd's ``gc.root`` label (now), plus *extra*: keeps a snapshot nothing else refers to."""
    labels = {LABEL_GC_ROOT: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    labels.update(extra or {})
    return labels


class SnapshotStore:
    """containerd's Snapshots service on one client (and so one namespace)."""

    def __init__(self, client: ContainerdClient) -> None:
        self.client = client
        self.stub = client.stub(snapshots_pb2_grpc.SnapshotsStub)

    def _call(self, method: Any, request: Any, *, what: str, lease: str = "",
              cancel_scope: Optional[CancelScope] = None, timeout: Optional[float] = None) -> Any:
        return self.client.call(method, request, what=what, lease=lease, cancel_scope=cancel_scope, timeout=timeout)

    # -- the RPCs ----------------------------------------------------------------------------------
    def prepare(self, snapshotter: str, key: str, parent: str, *, what: str, labels: Optional[dict[str, str]] = None,
                lease: str = "", cancel_scope: Optional[CancelScope] = None) -> list[Any]:
        """A new active snapshot *key* on *parent*; its mounts (containerd ``Mount`` messages)."""
        request = snapshots_pb2.PrepareSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent,
                                                       labels=labels or {})
        return list(self._call(self.stub.Prepare, request, what=what, lease=lease, cancel_scope=cancel_scope).mounts)

    def commit(self, snapshotter: str, name: str, key: str, *, what: str, labels: Optional[dict[str, str]] = None,
               lease: str = "", cancel_scope: Optional[CancelScope] = None) -> None:
        request = snapshots_pb2.CommitSnapshotRequest(snapshotter=snapshotter, name=name, key=key, labels=labels or {})
        self._call(self.stub.Commit, request, what=what, lease=lease, cancel_scope=cancel_scope)

    def view(self, snapshotter: str, key: str, parent: str, *, what: str, labels: Optional[dict[str, str]] = None,
             lease: str = "") -> list[Any]:
        request = snapshots_pb2.ViewSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent,
                                                    labels=labels or {})
        return list(self._call(self.stub.View, request, what=what, lease=lease).mounts)

    def mounts(self, snapshotter: str, key: str, *, what: str = "") -> list[Any]:
        """The mounts of active or view snapshot *key*."""
        request = snapshots_pb2.MountsRequest(snapshotter=snapshotter, key=key)
        return list(self._call(self.stub.Mounts, request, what=what or f"mounts of snapshot {key} in {snapshotter}")
                    .mounts)

    def stat(self, snapshotter: str, key: str, *, what: str, lease: str = "",
             cancel_scope: Optional[CancelScope] = None) -> snapshots_pb2.Info:
        request = snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key)
        return self._call(self.stub.Stat, request, what=what, lease=lease, cancel_scope=cancel_scope).info

    def usage(self, snapshotter: str, key: str, *, what: str) -> tuple[int, int]:
        """(bytes, inodes) of the snapshot's own layer."""
        resp = self._call(self.stub.Usage, snapshots_pb2.UsageRequest(snapshotter=snapshotter, key=key), what=what)
        return int(resp.size), int(resp.inodes)

    def infos(self, snapshotter: str, *, what: str) -> Iterator[snapshots_pb2.Info]:
        for batch in self.client.stream(self.stub.List, snapshots_pb2.ListSnapshotsRequest(snapshotter=snapshotter),
                                        what=what):
            yield from batch.info

    def remove(self, snapshotter: str, key: str, *, what: str, lease: str = "",
               timeout: Optional[float] = None) -> None:
        request = snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key)
        self._call(self.stub.Remove, request, what=what, lease=lease, timeout=timeout)

    def update_labels(self, snapshotter: str, key: str, labels: dict[str, str], *, what: str) -> None:
        """Set the named labels only."""
        request = snapshots_pb2.UpdateSnapshotRequest(
            snapshotter=snapshotter,
            info=snapshots_pb2.Info(name=key, labels=labels),
            update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{name}" for name in labels]),
        )
        self._call(self.stub.Update, request, what=what)

    # -- helpers -----------------------------------------------------------------------------------
    def exists(self, snapshotter: str, key: str, *, what: str = "", lease: str = "",
               cancel_scope: Optional[CancelScope] = None) -> bool:
        try:
            self.stat(snapshotter, key, what=what or f"snapshot {key} in {snapshotter}", lease=lease,
                      cancel_scope=cancel_scope)
        except errors.NotFound:
            return False
        return True

    def remove_if_present(self, snapshotter: str, key: str, *, what: str = "", lease: str = "",
                          timeout: Optional[float] = None) -> None:
        """Remove *key*; a snapshot that is not there is fine."""
        with contextlib.suppress(errors.NotFound):
            self.remove(snapshotter, key, what=what or f"removing snapshot {key} from {snapshotter}", lease=lease,
                        timeout=timeout)

    def keep(self, snapshotter: str, key: str) -> None:
        """Mark the snapshot as a GC root, as ``ctr snapshots prepare`` does, so it outlives its container."""
        with contextlib.suppress(errors.NotFound):
            self.update_labels(snapshotter, key, gc_root_labels(), what=f"keeping snapshot {key} in {snapshotter}")


__all__ = ["SnapshotStore", "gc_root_labels"]
