"""Writing blobs into containerd's content store through ``Content.Write``.

Every blob is written with its expected digest and size, so containerd verifies it on commit and
refuses anything else. A write session is keyed by a *ref* (``layer-sha256:...`` like containerd's
own client): a partial ingest left under that ref is resumed at its offset. Writes are pipelined
(a few chunks in flight) so the HTTP download, the gRPC stream and containerd's disk writes overlap.
On failure or cancellation the ingest is aborted, so no partial data stays behind.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Optional

import grpc

from .. import errors
from ..constants import CONFIG_MEDIA_TYPES, INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES
from .client import ContainerdClient
from .gclabels import is_layer_type
from .grpc_errors import map_rpc_error
from .interrupts import deferred_interrupts
from .pb import content_pb2, content_pb2_grpc

log = logging.getLogger(__name__)

STAT = content_pb2.STAT
WRITE = content_pb2.WRITE
COMMIT = content_pb2.COMMIT
#: Unacknowledged WRITE messages allowed on one stream.
WINDOW = 2
#: How long to wait for another writer that holds the same ref (e.g. a concurrent `ctr pull`).
LOCK_WAIT = 600.0

_DIGEST_MISMATCH = re.compile(r"unexpected commit digest (\S+), expected (\S+)")
_SIZE_MISMATCH = re.compile(r"unexpected commit size (\d+), expected (\d+)")

#: ``source(offset)`` yields the blob's bytes from *offset* on.
Source = Callable[[int], Iterable[bytes]]


class BlobCorrupt(errors.CtrError):
    """containerd refused to commit a blob: its bytes do not match the expected digest or size."""


def ref_key(media_type: str, digest: str) -> str:
    """The ingest ref containerd's client uses: ``layer-``, ``manifest-``, ``index-``, ``config-`` + digest."""
    if media_type in MANIFEST_MEDIA_TYPES:
        return f"manifest-{digest}"
    if media_type in INDEX_MEDIA_TYPES:
        return f"index-{digest}"
    if media_type in CONFIG_MEDIA_TYPES:
        return f"config-{digest}"
    if is_layer_type(media_type):
        return f"layer-{digest}"
    return f"unknown-{digest}"


class BlobWriter:
    """One ``Content.Write`` session. Not thread-safe, except :meth:`cancel`."""

    def __init__(
        self,
        client: ContainerdClient,
        ref: str,
        digest: str,
        size: int,
        *,
        lease: str = "",
        labels: Optional[dict[str, str]] = None,
        window: int = WINDOW,
    ) -> None:
        self._client = client
        self._stub = client.stub(content_pb2_grpc.ContentStub)
        self.ref = ref
        self.digest = digest
        self.size = size
        self.lease = lease
        self.labels = dict(labels or {})
        self.window = max(1, window)
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._call: Any = None
        self._inflight = 0
        self._offset = 0  # bytes sent
        self.acked = 0  # bytes containerd has confirmed
        self._cancelled = threading.Event()
        self.opened = False  # we hold the ingest (containerd answered our STAT)
        self.committed = False
        self.existed = False  # the commit found the blob already stored (digest given late)

    # -- the stream -----------------------------------------------------------------------------
    def _request_iter(self) -> Iterator[content_pb2.WriteContentRequest]:
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def _send(self, request: content_pb2.WriteContentRequest) -> None:
        self._requests.put(request)

    def _recv(self) -> content_pb2.WriteContentResponse:
        # Ctrl-C waits for containerd's answer (it comes in milliseconds, or the stream fails): raised
        # inside the stream's own condition wait it could leave a gRPC lock held and hang the channel
        # (soak: commit:2049013, list_leases then hung in channel_spin).
        try:
            with deferred_interrupts():
                return next(self._call)
        except StopIteration:
            raise errors.CtrError(f"writing {self.ref}: containerd closed the write stream early") from None

    def _error(self, err: grpc.RpcError) -> errors.CtrError:
        if self._cancelled.is_set():
            return errors.Interrupted(f"writing {self.ref}: cancelled")
        details = err.details() or ""
        if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
            found = _DIGEST_MISMATCH.search(details)
            if found:
                return BlobCorrupt(f"blob {self.digest} is corrupt: its bytes hash to {found.group(1)}",
                                   hint="containerd refused to store it; the source altered or damaged it")
            found = _SIZE_MISMATCH.search(details)
            if found:
                return BlobCorrupt(f"blob {self.digest} is corrupt: {found.group(1)} bytes received, "
                                   f"{found.group(2)} expected")
        return map_rpc_error(err, f"writing blob {self.digest} ({self.ref}) to containerd", self._client.address)

    def open(self, *, cancel: Optional[threading.Event] = None) -> Optional[int]:
        """Start the session; returns the offset to write from, or None when the blob exists already.

        With an empty ``digest`` the content is unknown until the end: set :attr:`digest` before
        :meth:`commit` (containerd still verifies it).

        An existing blob is added to the lease by containerd as a side effect, like its own client.
        Waits (with backoff) while another writer holds the same ref.
        """
        deadline = time.monotonic() + LOCK_WAIT
        delay = 0.01
        while True:
            self._requests = queue.SimpleQueue()
            with deferred_interrupts():
                self._call = self._stub.Write(self._request_iter(), metadata=self._client.metadata(self.lease))
            self._send(content_pb2.WriteContentRequest(action=STAT, ref=self.ref, total=self.size,
                                                       expected=self.digest))
            try:
                status = self._recv()
            except grpc.RpcError as err:
                self._finish_stream()
                if err.code() == grpc.StatusCode.ALREADY_EXISTS:
                    return None
                locked = err.code() == grpc.StatusCode.UNAVAILABLE and "locked" in (err.details() or "")
                if locked and time.monotonic() < deadline and not (cancel and cancel.is_set()):
                    log.debug("ingest %s is locked by another writer; waiting", self.ref)
                    if cancel is not None:
                        cancel.wait(delay)
                    else:
                        time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                raise self._error(err) from None
            except BaseException:
                # Ctrl-C while containerd answers: an open stream would keep the ref locked (and its
                # request thread waiting) until the process ends, so a rerun could never write it.
                self._finish_stream()
                raise
            offset = int(status.offset)
            if offset > self.size:
                offset = 0  # garbage in the ingest: the first write at offset 0 truncates it
            self._offset = self.acked = offset
            self.opened = True
            return offset

    def write(self, chunks: Iterable[bytes], on_progress: Optional[Callable[[int], None]] = None) -> None:
        """Send *chunks* (pipelined); *on_progress(acked_bytes)* follows containerd's confirmations."""
        try:
            for chunk in chunks:
                if self._cancelled.is_set():
                    raise errors.Interrupted(f"writing {self.ref}: cancelled")
                if not chunk:
                    continue
                self._send(content_pb2.WriteContentRequest(action=WRITE, offset=self._offset, data=chunk))
                self._offset += len(chunk)
                self._inflight += 1
                if self._inflight >= self.window:
                    self._ack(on_progress)
        except grpc.RpcError as err:
            raise self._error(err) from None

    def _ack(self, on_progress: Optional[Callable[[int], None]]) -> None:
        response = self._recv()
        self._inflight -= 1
        self.acked = int(response.offset)
        if on_progress is not None:
            on_progress(self.acked)

    def commit(self, on_progress: Optional[Callable[[int], None]] = None) -> None:
        """Ask containerd to verify and commit; raises :class:`BlobCorrupt` on a mismatch."""
        try:
            self._send(content_pb2.WriteContentRequest(action=COMMIT, offset=self._offset, total=self.size,
                                                       expected=self.digest, labels=self.labels))
            self._requests.put(None)
            while self._inflight:
                self._ack(on_progress)
            final = self._recv()
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.ALREADY_EXISTS:
                self.committed = self.existed = True  # containerd dropped our copy and kept its own
                return
            raise self._error(err) from None
        finally:
            self._finish_stream()
        if final.digest and final.digest != self.digest:
            raise BlobCorrupt(f"blob {self.digest} was committed as {final.digest}")
        self.acked = int(final.offset)
        self.committed = True
        if on_progress is not None:
            on_progress(self.acked)

    def cancel(self) -> None:
        """Stop the session from any thread; the writer's next step raises Interrupted."""
        self._cancelled.set()
        if self._call is not None:
            with deferred_interrupts():
                self._call.cancel()
        self._requests.put(None)

    def _finish_stream(self) -> None:
        self._requests.put(None)
        if self._call is not None:
            with deferred_interrupts():
                self._call.cancel()

    def abort(self) -> None:
        """Drop the partial ingest (idempotent; safe on any path)."""
        self._finish_stream()
        abort_ingest(self._client, self.ref, lease=self.lease)


def abort_ingest(client: ContainerdClient, ref: str, *, lease: str = "") -> None:
    stub = client.stub(content_pb2_grpc.ContentStub)
    try:
        client.call(stub.Abort, content_pb2.AbortRequest(ref=ref), what=f"aborting ingest {ref}",
                    lease=lease, timeout=30.0)
    except errors.NotFound:
        pass
    except errors.CtrError as exc:
        log.warning("could not abort ingest %s: %s", ref, exc)


def ingest(  # noqa: PLR0913  (the Content service's write parameters, plus progress and cancel)
    client: ContainerdClient,
    ref: str,
    digest: str,
    size: int,
    source: Source,
    *,
    lease: str = "",
    labels: Optional[dict[str, str]] = None,
    on_progress: Optional[Callable[[int], None]] = None,
    cancel: Optional[threading.Event] = None,
    on_open: Optional[Callable[[BlobWriter], None]] = None,
) -> bool:
    """Write one blob; True when written, False when containerd already had it (then it is leased).

    *on_open* receives the writer so another thread can :meth:`BlobWriter.cancel` it.
    """
    writer = BlobWriter(client, ref, digest, size, lease=lease, labels=labels)
    if on_open is not None:
        on_open(writer)
    if cancel is not None and cancel.is_set():
        raise errors.Interrupted(f"writing {ref}: cancelled")
    try:
        offset = writer.open(cancel=cancel)
    except KeyboardInterrupt:
        writer.abort()  # containerd may have started the ingest before the interrupt
        raise
    if offset is None:
        return False
    try:
        if offset < size or size == 0:
            writer.write(source(offset), on_progress)
        writer.commit(on_progress)
    except BaseException:
        writer.abort()
        raise
    return True


def write_bytes(
    client: ContainerdClient,
    ref: str,
    digest: str,
    data: bytes,
    *,
    lease: str = "",
    labels: Optional[dict[str, str]] = None,
) -> bool:
    """Write a small blob held in memory (manifest, config, index)."""
    return ingest(client, ref, digest, len(data), lambda offset: [data[offset:]], lease=lease, labels=labels)
