"""Wait for a task (or exec) to exit through containerd's Events service, without polling.

A subscription has no acknowledgement, so an exit published between "subscribe" and "the
server registered us" would be lost. :class:`ExitWatcher` closes that gap: after subscribing it
publishes a probe event to itself and returns only once the probe came back, so every exit
after ``__enter__`` is seen. Callers then check the current state once (the process may have
exited before) and act (kill...).
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from typing import Any, Optional

import grpc
from google.protobuf import any_pb2

from .. import errors
from ..constants import PROBE_TYPE_URL, TOPIC_SUBSCRIPTION_PROBE, TOPIC_TASK_EXIT
from .client import ContainerdClient
from .pb import events_pb2, events_pb2_grpc, task_events_pb2

log = logging.getLogger(__name__)

_READY_TIMEOUT = 10.0
_FIRST_PROBE_INTERVAL = 0.02
_TASK_EXIT_TYPE = task_events_pb2.TaskExit.DESCRIPTOR.full_name


def quote_filter(value: str) -> str:
    """A containerd filter string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ExitWatcher:
    """``with ExitWatcher(client, "box") as w: ...kill...; status = w.wait(10)``."""

    def __init__(self, client: ContainerdClient, container_id: str, exec_id: str = "") -> None:
        self._client = client
        self.container_id = container_id
        self.process_id = exec_id or container_id
        self._token = secrets.token_hex(8).encode()
        self._ready = threading.Event()
        self._exits: queue.Queue[Optional[tuple[int, int]]] = queue.Queue()  # (pid, exit status)
        self._call: Any = None
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def _filters(self) -> list[str]:
        ns = quote_filter(self._client.namespace)
        return [
            f"namespace=={ns},topic=={quote_filter(TOPIC_TASK_EXIT)},"
            f"event.container_id=={quote_filter(self.container_id)},event.id=={quote_filter(self.process_id)}",
            f"namespace=={ns},topic=={quote_filter(TOPIC_SUBSCRIPTION_PROBE)}",
        ]

    def __enter__(self) -> ExitWatcher:
        stub = self._client.stub(events_pb2_grpc.EventsStub)
        self._call = stub.Subscribe(events_pb2.SubscribeRequest(filters=self._filters()),
                                    metadata=self._client.metadata())
        self._thread = threading.Thread(target=self._read, name=f"exit-watch-{self.process_id}", daemon=True)
        self._thread.start()
        try:
            self._confirm_live(stub)
        except BaseException:
            self.close()
            raise
        return self

    def _confirm_live(self, stub: Any) -> None:
        """Publish the probe until it comes back (a probe sent before the server registered us is lost)."""
        probe = events_pb2.PublishRequest(topic=TOPIC_SUBSCRIPTION_PROBE,
                                          event=any_pb2.Any(type_url=PROBE_TYPE_URL, value=self._token))
        deadline = time.monotonic() + _READY_TIMEOUT
        interval = _FIRST_PROBE_INTERVAL
        while True:
            self._client.call(stub.Publish, probe, what="probing the events subscription", timeout=_READY_TIMEOUT)
            if self._ready.wait(interval):
                break
            if time.monotonic() > deadline:
                raise errors.Unavailable(f"containerd did not deliver events within {_READY_TIMEOUT:.0f}s",
                                         hint="is the daemon overloaded?")
            interval = min(interval * 2, 1.0)
        if self._error is not None:
            raise self._error

    def _read(self) -> None:
        try:
            for envelope in self._call:
                if envelope.topic == TOPIC_SUBSCRIPTION_PROBE:
                    if envelope.event.value == self._token:
                        self._ready.set()
                    continue
                # containerd's type URLs have no "host/" part, which Any.Unpack insists on.
                if envelope.event.type_url.rsplit("/", 1)[-1] != _TASK_EXIT_TYPE:
                    log.debug("ignoring event of type %s", envelope.event.type_url)
                    continue
                exit_event = task_events_pb2.TaskExit.FromString(envelope.event.value)
                if exit_event.id == self.process_id and exit_event.container_id == self.container_id:
                    self._exits.put((exit_event.pid, exit_event.exit_status))
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                from .grpc_errors import map_rpc_error

                self._error = map_rpc_error(err, "watching task events", self._client.address)
        finally:
            self._ready.set()
            self._exits.put(None)

    def wait(self, timeout: Optional[float], pid: int = 0) -> Optional[int]:
        """The exit status, or None when *timeout* (seconds) passed first. Ctrl-C interrupts.

        With *pid*, only that process's exit counts: events are asynchronous, so a late exit of an
        earlier task of the same container can still arrive after this one started.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                event = self._exits.get(timeout=remaining)
            except queue.Empty:
                return None
            if event is None:
                self._exits.put(None)
                raise self._error or errors.Unavailable(f"event stream for task {self.container_id} ended",
                                                        hint="did containerd restart?")
            exited_pid, status = event
            if not pid or exited_pid == pid:
                return status
            log.debug("ignoring the exit of pid %d of %s (waiting for pid %d)", exited_pid, self.process_id, pid)

    def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def __exit__(self, *exc: object) -> None:
        self.close()
