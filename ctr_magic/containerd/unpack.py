"""Unpacking image layers into a snapshotter, the way containerd's own client does.

Per layer: if a committed snapshot named by the layer's chain ID exists, skip it; otherwise
``Snapshots.Prepare`` an ``extract-<unique> <chainID>`` key on top of the parent chain, apply the
layer through the ``Diff`` service, check the resulting diff ID against the image config, and
``Snapshots.Commit`` it under the chain ID. The layer blob then gets a ``containerd.io/uncompressed``
label and, at the end, the config blob a ``containerd.io/gc.ref.snapshot.<snapshotter>`` label
naming the top snapshot, so the image keeps its snapshots alive and GC removes them with it.
Everything happens under the caller's lease.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Optional

from .. import errors
from ..constants import LABEL_SNAPSHOT_REF, LABEL_UNCOMPRESSED
from ..registry.manifests import Descriptor
from .client import CancelScope, ContainerdClient
from .content import ContentStore
from .gclabels import snapshot_label
from .imagestore import chain_ids
from .pb import (
    descriptor_pb2,
    diff_pb2,
    diff_pb2_grpc,
    leases_pb2,
    leases_pb2_grpc,
)
from .progress import UNPACKED, UNPACKING
from .snapshotstore import SnapshotStore

log = logging.getLogger(__name__)

#: Annotations with this prefix on a layer descriptor become snapshot labels (as in containerd).
INHERITED_LABEL_PREFIX = "containerd.io/snapshot/"


def unpack_key(chain_id: str) -> str:
    """``extract-<nanoseconds>-<random> <chainID>``: containerd's format for extraction snapshots."""
    unique = base64.urlsafe_b64encode(os.urandom(3)).decode()
    return f"extract-{time.time_ns() % 1_000_000_000}-{unique} {chain_id}"


class Unpacker:
    """Applies layers of one image, bottom up. :meth:`cancel` may be called from another thread."""

    def __init__(self, client: ContainerdClient, snapshotter: str, *, lease: str = "") -> None:
        self._client = client
        self.snapshotter = snapshotter
        self.lease = lease
        self._snapshots = SnapshotStore(client)
        self._diff = client.stub(diff_pb2_grpc.DiffStub)
        self._leases = client.stub(leases_pb2_grpc.LeasesStub)
        self._content = ContentStore(client)
        self._scope = CancelScope()

    # -- calls that another thread can cancel ---------------------------------------------------
    def _call(self, method: Any, request: Any, what: str) -> Any:
        return self._client.call(method, request, what=what, lease=self.lease, cancel_scope=self._scope)

    def cancel(self) -> None:
        self._scope.cancel()

    # -- snapshots ------------------------------------------------------------------------------
    def exists(self, chain_id: str) -> bool:
        return self._snapshots.exists(self.snapshotter, chain_id, what=f"looking up snapshot {chain_id} in "
                                      f"{self.snapshotter}", lease=self.lease, cancel_scope=self._scope)

    def present(self, chain_id: str) -> bool:
        """Is *chain_id* unpacked already? If so it is held by our lease first, so that garbage
        collection cannot take it (e.g. left unreferenced by an interrupted pull) before a later
        layer is prepared on top of it."""
        if self.lease:
            self._call(self._leases.AddResource,
                       leases_pb2.AddResourceRequest(id=self.lease, resource=leases_pb2.Resource(
                           id=chain_id, type=f"snapshots/{self.snapshotter}")),
                       f"holding snapshot {chain_id} in lease {self.lease}")
        return self.exists(chain_id)

    def check_snapshotter(self) -> None:
        """Fail early, with a clear message, when the snapshotter does not exist."""
        try:
            self.exists("sha256:" + "0" * 64)
        except errors.CtrError as exc:
            if "snapshotter not loaded" in str(exc) or isinstance(exc, errors.InvalidArgument):
                raise errors.InvalidArgument(
                    f"snapshotter {self.snapshotter!r} is not available in containerd",
                    hint="use one the daemon has loaded, e.g. overlayfs or native",
                ) from None
            raise

    def _remove(self, key: str) -> None:
        try:
            self._snapshots.remove_if_present(self.snapshotter, key, what=f"removing extraction snapshot {key}",
                                              lease=self.lease, timeout=60.0)
        except errors.CtrError as exc:
            log.warning("could not remove extraction snapshot %r: %s", key, exc)

    # -- one layer ------------------------------------------------------------------------------
    def unpack_layer(self, layer: Descriptor, parent: str, chain_id: str, diff_id: str) -> bool:
        """Apply *layer* on top of snapshot *parent* as *chain_id*; False when it was there already."""
        if self.present(chain_id):
            return False
        return self._apply_layer(layer, parent, chain_id, diff_id)

    def _apply_layer(self, layer: Descriptor, parent: str, chain_id: str, diff_id: str) -> bool:
        labels = {k: v for k, v in layer.annotations.items() if k.startswith(INHERITED_LABEL_PREFIX)}
        labels[LABEL_SNAPSHOT_REF] = chain_id
        key = ""
        mounts: Any = None
        for _ in range(3):
            key = unpack_key(chain_id)
            try:
                mounts = self._snapshots.prepare(
                    self.snapshotter, key, parent, labels=labels, what=f"preparing a snapshot for layer {layer.digest}",
                    lease=self.lease, cancel_scope=self._scope)
                break
            except errors.AlreadyExists:
                if self.exists(chain_id):
                    return False
            except BaseException:
                self._remove(key)  # a cancelled Prepare may still have created the snapshot
                raise
        if mounts is None:
            raise errors.CtrError(f"could not prepare an extraction snapshot for layer {layer.digest}")
        try:
            applied = self._call(
                self._diff.Apply,
                diff_pb2.ApplyRequest(
                    diff=descriptor_pb2.Descriptor(media_type=layer.media_type, digest=layer.digest,
                                                   size=layer.size, annotations=layer.annotations),
                    mounts=mounts,
                ),
                f"applying layer {layer.digest}",
            ).applied
            if applied.digest != diff_id:
                raise errors.CtrError(
                    f"layer {layer.digest} unpacked to diff ID {applied.digest}, but the image config says {diff_id}",
                    hint="the image is inconsistent; rebuild or re-push it",
                )
            try:
                self._snapshots.commit(self.snapshotter, chain_id, key, labels=labels,
                                       what=f"committing snapshot {chain_id}", lease=self.lease,
                                       cancel_scope=self._scope)
            except errors.AlreadyExists:
                self._remove(key)
                return False
        except BaseException:
            self._remove(key)
            raise
        self._content.set_labels(layer.digest, {LABEL_UNCOMPRESSED: diff_id})
        return True

    # -- a whole image --------------------------------------------------------------------------
    def finish(self, config_digest: str, top_chain_id: str) -> None:
        """Let the image's config keep its snapshots alive (``gc.ref.snapshot.<snapshotter>``)."""
        self._content.set_labels(config_digest, {snapshot_label(self.snapshotter): top_chain_id})

    def unpack_all(
        self,
        layers: list[Descriptor],
        diff_ids: list[str],
        config_digest: str,
        *,
        wait_for: Optional[Callable[[int], None]] = None,
        on_layer: Optional[Callable[[int, str], None]] = None,
    ) -> str:
        """Unpack every layer in order; returns the top chain ID.

        *wait_for(i)* blocks until layer *i*'s blob is in the content store (so unpacking can start
        while later layers still download); *on_layer(i, state)* reports ``unpacking``/``unpacked``.
        """
        if len(layers) != len(diff_ids):
            raise errors.CtrError(
                f"image config lists {len(diff_ids)} diff IDs for {len(layers)} layers",
                hint="the image is inconsistent; rebuild or re-push it",
            )
        chains = chain_ids(diff_ids)
        for i, layer in enumerate(layers):
            if wait_for is not None:
                wait_for(i)
            if not self.present(chains[i]):
                if on_layer is not None:
                    on_layer(i, UNPACKING)
                self._apply_layer(layer, chains[i - 1] if i else "", chains[i], diff_ids[i])
            if on_layer is not None:
                on_layer(i, UNPACKED)
        top = chains[-1] if chains else ""
        if top:
            self.finish(config_digest, top)
        return top
