"""Leases: keep what a multi-step operation creates safe from garbage collection until it is referenced.

``with Lease(client, "pull") as lease:`` creates a lease that expires by itself after ``expire``
seconds (containerd's ``gc.expire`` label), passes ``lease.id`` to calls, and deletes the lease at the
end — also on errors and KeyboardInterrupt. Content and snapshots created with the lease in the call
metadata join it automatically; :meth:`Lease.add_resource` adds existing ones.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from datetime import datetime, timedelta, timezone
from typing import Optional

from .. import errors
from ..constants import LABEL_GC_EXPIRE, LABEL_PREFIX
from .client import ContainerdClient
from .interrupts import deferred_interrupts
from .pb import leases_pb2, leases_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_EXPIRE = 24 * 3600.0  # what containerd's own client uses
#: How long cleaning up after containerd went away waits for it to come back.
CLEANUP_WAIT = 20.0
LABEL_LEASE_PURPOSE = f"{LABEL_PREFIX}/lease-purpose"


def _rfc3339(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Lease:
    """A containerd lease as a context manager (see module docstring)."""

    def __init__(self, client: ContainerdClient, purpose: str = "op", *, expire: float = DEFAULT_EXPIRE,
                 lease_id: str = "") -> None:
        self._client = client
        self._stub = client.stub(leases_pb2_grpc.LeasesStub)
        self.purpose = purpose
        self.expire = expire
        self.id = lease_id or f"ctr-magic-{purpose}-{secrets.token_hex(6)}"
        self._created = False

    def __repr__(self) -> str:
        return f"Lease(id={self.id!r}, active={self._created})"

    def create(self) -> Lease:
        until = datetime.now(timezone.utc) + timedelta(seconds=self.expire)
        labels = {LABEL_GC_EXPIRE: _rfc3339(until), LABEL_LEASE_PURPOSE: self.purpose}
        try:
            # Ctrl-C waits for containerd's answer: a Delete sent after a cancelled Create could reach
            # containerd first (NotFound), and the Create then made the lease after all (soak: create:2028022).
            with deferred_interrupts():
                self._client.call(self._stub.Create, leases_pb2.CreateRequest(id=self.id, labels=labels),
                                  what=f"creating lease {self.id}")
        except BaseException as exc:
            # Interrupted (or failed) after containerd may have made it: the cancel can arrive too late,
            # or containerd died after making it (then wait, bounded, for it to come back).
            self._created = True
            try:
                if isinstance(exc, errors.Unavailable):
                    self._client.wait_until_reachable(CLEANUP_WAIT)
                self.delete()
            except Exception:
                log.debug("removing lease %s after a failed create", self.id, exc_info=True)
            raise
        self._created = True
        log.debug("lease %s created", self.id)
        return self

    def add_resource(self, resource_id: str, resource_type: str) -> None:
        """Add an existing resource: ``("sha256:...", "content")`` or ``(key, "snapshots/overlayfs")``."""
        self._client.call(
            self._stub.AddResource,
            leases_pb2.AddResourceRequest(id=self.id, resource=leases_pb2.Resource(id=resource_id, type=resource_type)),
            what=f"adding {resource_type} {resource_id} to lease {self.id}",
        )

    def add_content(self, digest: str) -> None:
        self.add_resource(digest, "content")

    def add_snapshot(self, snapshotter: str, key: str) -> None:
        self.add_resource(key, f"snapshots/{snapshotter}")

    def delete(self, *, sync: bool = False) -> None:
        """Delete the lease (idempotent). With *sync*, containerd runs GC before answering."""
        if not self._created:
            return
        with contextlib.suppress(errors.NotFound):
            self._client.call(self._stub.Delete, leases_pb2.DeleteRequest(id=self.id, sync=sync),
                              what=f"deleting lease {self.id}", timeout=60.0)
        self._created = False
        log.debug("lease %s deleted", self.id)

    def __enter__(self) -> Lease:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        try:
            self.delete()
        except errors.Unavailable:
            if exc[0] is None:
                raise
            # Failing already (containerd went away): keep that error; the lease expires by itself.
            log.warning("could not delete lease %s; it expires by itself", self.id)
        except KeyboardInterrupt:
            # A second Ctrl-C while cleaning up: finish the deletion, then let it propagate.
            self.delete()
            raise


def list_leases(client: ContainerdClient, filters: Optional[list[str]] = None) -> list[leases_pb2.Lease]:
    stub = client.stub(leases_pb2_grpc.LeasesStub)
    resp = client.call(stub.List, leases_pb2.ListRequest(filters=filters or []), what="listing leases")
    return list(resp.leases)
