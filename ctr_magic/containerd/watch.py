"""Container and task events of one namespace, from containerd's Events service, as ContainerEvents.

The subscription is confirmed live before :func:`subscribe` returns (a probe event published to
ourselves came back), so a change made right after it is never missed.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any, Optional

import grpc
from google.protobuf import any_pb2

from .. import errors
from .._proto.containerd.events import container_pb2 as container_events_pb2
from ..constants import PROBE_TYPE_URL, TOPIC_SUBSCRIPTION_PROBE
from ..monitoring import RESYNC, ContainerEvent, EventStream
from .client import ContainerdClient
from .pb import events_pb2, events_pb2_grpc, task_events_pb2
from .task_events import quote_filter

log = logging.getLogger(__name__)

_READY_TIMEOUT = 10.0
_RESUME_WITHIN = 600.0

# topic -> (message class, our action, the field holding the container id)
_TOPICS: dict[str, tuple[Any, str, str]] = {
    "/containers/create": (container_events_pb2.ContainerCreate, "create", "id"),
    "/containers/update": (container_events_pb2.ContainerUpdate, "update", "id"),
    "/containers/delete": (container_events_pb2.ContainerDelete, "delete", "id"),
    "/tasks/create": (task_events_pb2.TaskCreate, "update", "container_id"),
    "/tasks/start": (task_events_pb2.TaskStart, "start", "container_id"),
    "/tasks/exit": (task_events_pb2.TaskExit, "exit", "container_id"),
    "/tasks/delete": (task_events_pb2.TaskDelete, "task-delete", "container_id"),
    "/tasks/paused": (task_events_pb2.TaskPaused, "pause", "container_id"),
    "/tasks/resumed": (task_events_pb2.TaskResumed, "resume", "container_id"),
    "/tasks/oom": (task_events_pb2.TaskOOM, "oom", "container_id"),
}


def decode(topic: str, payload: bytes, stamp: float) -> Optional[ContainerEvent]:
    """The ContainerEvent of one envelope; None for topics the views do not follow (and exec exits)."""
    known = _TOPICS.get(topic)
    if known is None:
        return None
    message_class, action, id_field = known
    message = message_class.FromString(payload)
    container_id = getattr(message, id_field)
    attributes: dict[str, str] = {}
    if topic in ("/tasks/exit", "/tasks/delete"):
        if message.id and message.id != container_id:
            return None  # an exec process ended, not the container's task
        attributes["exit_status"] = str(message.exit_status)
    if hasattr(message, "pid") and message.pid:
        attributes["pid"] = str(message.pid)
    return ContainerEvent(container_id, action, stamp, attributes)


class _Subscription:
    """One Events.Subscribe call filtered to a namespace's container and task topics, plus the probe.

    *resumed*: this one replaces a subscription a daemon restart broke; once it is confirmed live it
    yields a ``resync`` event, the consumer's cue to list everything again (what changed while
    nobody was subscribed is not replayed by containerd).
    """

    def __init__(self, client: ContainerdClient, *, resumed: bool = False) -> None:
        self._client = client
        self._token = secrets.token_hex(8).encode()
        self._resumed = resumed
        self.ready = threading.Event()
        self.confirmed = False  # our probe came back: the subscription is registered
        ns = quote_filter(client.namespace)
        filters = [
            f'namespace=={ns},topic~="^/(containers|tasks)/"',
            f"namespace=={ns},topic=={quote_filter(TOPIC_SUBSCRIPTION_PROBE)}",
        ]
        self._stub = client.stub(events_pb2_grpc.EventsStub)
        self.call = self._stub.Subscribe(events_pb2.SubscribeRequest(filters=filters), metadata=client.metadata())

    def events(self) -> Iterator[ContainerEvent]:
        try:
            for envelope in self.call:
                if envelope.topic == TOPIC_SUBSCRIPTION_PROBE:
                    if envelope.event.value == self._token and not self.confirmed:
                        self.confirmed = True
                        self.ready.set()
                        if self._resumed:
                            yield ContainerEvent("", RESYNC, time.time())
                    continue
                stamp = envelope.timestamp.seconds + envelope.timestamp.nanos / 1e9
                event = decode(envelope.topic, envelope.event.value, stamp or time.time())
                if event is not None:
                    yield event
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                from .grpc_errors import map_rpc_error

                raise map_rpc_error(err, "watching container events", self._client.address) from None
        finally:
            self.ready.set()

    def confirm_live(self, stopped: Optional[threading.Event] = None) -> None:
        """Publish the probe until it comes back (one sent before the server registered us is lost)."""
        probe = events_pb2.PublishRequest(topic=TOPIC_SUBSCRIPTION_PROBE,
                                          event=any_pb2.Any(type_url=PROBE_TYPE_URL, value=self._token))
        deadline = time.monotonic() + _READY_TIMEOUT
        interval = 0.02
        while not self.ready.is_set() and not (stopped is not None and stopped.is_set()):
            self._client.call(self._stub.Publish, probe, what="probing the events subscription",
                              timeout=_READY_TIMEOUT)
            if self.ready.wait(interval):
                break
            if time.monotonic() > deadline:
                raise errors.Unavailable(f"containerd did not deliver events within {_READY_TIMEOUT:.0f}s",
                                         hint="is the daemon overloaded?")
            interval = min(interval * 2, 1.0)


class _ResumingEvents:
    """The events of one subscription after another: a daemon restart ends one, the next starts once
    containerd answers again (for up to *resume_within* seconds), its first event ``resync``."""

    def __init__(self, client: ContainerdClient, resume_within: float) -> None:
        self._client = client
        self._resume_within = resume_within
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self.current = _Subscription(client)
        self._was_live = False  # only a subscription that worked once is resumed

    def mark_live(self) -> None:
        self._was_live = True

    def cancel(self) -> None:
        self._closed.set()
        with self._lock:
            self.current.call.cancel()

    def events(self) -> Iterator[ContainerEvent]:
        while True:
            try:
                yield from self.current.events()
                return  # cancelled: the stream was closed
            except errors.Unavailable:
                if not self._was_live or self._closed.is_set() or not self._wait_for_daemon():
                    raise
                log.info("containerd at %s is back: resubscribing to events", self._client.address)
            with self._lock:
                if self._closed.is_set():
                    return
                self.current = _Subscription(self._client, resumed=True)
            prober = threading.Thread(target=self._confirm, args=(self.current,), daemon=True,
                                      name=f"ctr-events-probe-{self._client.namespace}")
            prober.start()

    def _wait_for_daemon(self) -> bool:
        deadline = time.monotonic() + self._resume_within
        while not self._closed.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._client.wait_until_reachable(min(left, 1.0)):
                return not self._closed.is_set()
        return False

    def _confirm(self, subscription: _Subscription) -> None:
        try:
            subscription.confirm_live(self._closed)
        except errors.CtrError:
            log.warning("the resumed events subscription was not confirmed live", exc_info=True)
            subscription.call.cancel()


def subscribe(client: ContainerdClient, *, resume_within: float = _RESUME_WITHIN) -> EventStream:
    """A live stream of the namespace's container events; close it to end its thread.

    A containerd restart does not end it: it resubscribes once containerd is back (within
    *resume_within* seconds, else the stream ends with the error) and then yields ``resync``.
    """
    source = _ResumingEvents(client, resume_within)
    stream = EventStream(source.events(), source.cancel, name=f"ctr-events-{client.namespace}")
    try:
        source.current.confirm_live()
        if not source.current.confirmed:  # the subscription ended before it was live
            for thread in stream.threads:
                thread.join(_READY_TIMEOUT)
            raise stream.error or errors.Unavailable(f"containerd at {client.address} ended the events subscription",
                                                     hint="is it running? (`ctr-magic up`)")
        source.mark_live()
    except BaseException:
        stream.close()
        raise
    return stream


__all__ = ["decode", "subscribe"]
