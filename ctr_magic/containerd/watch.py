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
from ..monitoring import ContainerEvent, EventStream
from .client import ContainerdClient
from .pb import events_pb2, events_pb2_grpc, task_events_pb2
from .task_events import quote_filter

log = logging.getLogger(__name__)

_READY_TIMEOUT = 10.0

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
    """One Events.Subscribe call filtered to a namespace's container and task topics, plus the probe."""

    def __init__(self, client: ContainerdClient) -> None:
        self._client = client
        self._token = secrets.token_hex(8).encode()
        self.ready = threading.Event()
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
                    if envelope.event.value == self._token:
                        self.ready.set()
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

    def confirm_live(self, stream: EventStream) -> None:
        """Publish the probe until it comes back (one sent before the server registered us is lost)."""
        probe = events_pb2.PublishRequest(topic=TOPIC_SUBSCRIPTION_PROBE,
                                          event=any_pb2.Any(type_url=PROBE_TYPE_URL, value=self._token))
        deadline = time.monotonic() + _READY_TIMEOUT
        interval = 0.02
        while not self.ready.is_set():
            self._client.call(self._stub.Publish, probe, what="probing the events subscription",
                              timeout=_READY_TIMEOUT)
            if self.ready.wait(interval):
                break
            if time.monotonic() > deadline:
                raise errors.Unavailable(f"containerd did not deliver events within {_READY_TIMEOUT:.0f}s",
                                         hint="is the daemon overloaded?")
            interval = min(interval * 2, 1.0)
        if stream.error is not None:
            raise stream.error


def subscribe(client: ContainerdClient) -> EventStream:
    """A live stream of the namespace's container events; close it to end its thread."""
    subscription = _Subscription(client)
    stream = EventStream(subscription.events(), subscription.call.cancel, name=f"ctr-events-{client.namespace}")
    try:
        subscription.confirm_live(stream)
    except BaseException:
        stream.close()
        raise
    return stream


__all__ = ["decode", "subscribe"]
