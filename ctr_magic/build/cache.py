"""The layer cache of containerd builds: one lease per cached step.

A step's cache key digests its parent's key and everything that decides its result (the
instruction, the environment it runs in, the content of the files it copies). The entry is a lease
named by the key that holds the step's layer blob and committed snapshot (so garbage collection
keeps them while nothing else does) and carries, in its labels, what the next build needs to reuse
them. ``prune`` drops every entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Optional

from .. import errors
from ..constants import LABEL_PREFIX
from ..containerd.leases import LABEL_LEASE_PURPOSE, list_leases
from ..containerd.pb import leases_pb2, leases_pb2_grpc
from ..registry.manifests import Descriptor

PURPOSE = "build-cache"
LEASE_PREFIX = "ctr-magic-bc-"
_LAYER = f"{LABEL_PREFIX}/build.layer"
_MEDIA = f"{LABEL_PREFIX}/build.media-type"
_SIZE = f"{LABEL_PREFIX}/build.size"
_DIFF_ID = f"{LABEL_PREFIX}/build.diff-id"
_CHAIN = f"{LABEL_PREFIX}/build.chain"

log = logging.getLogger(__name__)


def step_key(parent: str, *parts: str) -> str:
    """The cache key of a step: a digest of its parent's key and what decides its result."""
    digest = hashlib.sha256(parent.encode())
    for part in parts:
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    layer: Descriptor
    diff_id: str
    chain: str


class BuildCache:
    """Cache entries in one containerd namespace (see module docstring)."""

    def __init__(self, service: Any, snapshotter: str) -> None:
        self.client = service.client
        self.content = service.content
        self.snapshotter = snapshotter
        self._stub = self.client.stub(leases_pb2_grpc.LeasesStub)

    @staticmethod
    def lease_id(key: str) -> str:
        return LEASE_PREFIX + key[:48]

    def lookup(self, key: str, snapshots: Any) -> Optional[CacheEntry]:
        """The entry for *key* when its snapshot still exists; None otherwise."""
        found = list_leases(self.client, [f"id=={self.lease_id(key)}"])
        if not found:
            return None
        labels = dict(found[0].labels)
        try:
            entry = CacheEntry(Descriptor(media_type=labels[_MEDIA], digest=labels[_LAYER], size=int(labels[_SIZE])),
                               labels[_DIFF_ID], labels[_CHAIN])
        except (KeyError, ValueError):
            return None
        # The build's lease keeps them even if the cache is pruned meanwhile.
        snapshots.hold(entry.chain)
        snapshots.hold_content(entry.layer.digest)
        if not snapshots.exists(entry.chain) or not self.content.exists(entry.layer.digest):
            return None  # an entry cut short (say, by an interrupt while it was recorded)
        return entry

    def store(self, key: str, entry: CacheEntry) -> None:
        lease_id = self.lease_id(key)
        self._delete(lease_id)
        labels = {LABEL_LEASE_PURPOSE: PURPOSE, _LAYER: entry.layer.digest, _MEDIA: entry.layer.media_type,
                  _SIZE: str(entry.layer.size), _DIFF_ID: entry.diff_id, _CHAIN: entry.chain}
        try:
            self.client.call(self._stub.Create, leases_pb2.CreateRequest(id=lease_id, labels=labels),
                             what=f"recording build cache entry {lease_id}")
        except errors.AlreadyExists:
            return  # a build running at the same time recorded the same step
        for resource_id, kind in ((entry.layer.digest, "content"), (entry.chain, f"snapshots/{self.snapshotter}")):
            self.client.call(self._stub.AddResource, leases_pb2.AddResourceRequest(
                id=lease_id, resource=leases_pb2.Resource(id=resource_id, type=kind)),
                what=f"holding {resource_id} in build cache entry {lease_id}")

    def _delete(self, lease_id: str) -> None:
        with contextlib.suppress(errors.NotFound):
            self.client.call(self._stub.Delete, leases_pb2.DeleteRequest(id=lease_id),
                             what=f"deleting build cache entry {lease_id}")

    def entries(self) -> list[str]:
        return [lease.id for lease in list_leases(self.client, [f'labels."{LABEL_LEASE_PURPOSE}"=={PURPOSE}'])]

    def prune(self) -> int:
        """Drop every cache entry of the namespace; returns how many there were."""
        ids = self.entries()
        for lease_id in ids:
            self._delete(lease_id)
        return len(ids)


__all__ = ["LEASE_PREFIX", "PURPOSE", "BuildCache", "CacheEntry", "step_key"]
