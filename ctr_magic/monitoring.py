"""What the live views watch: container events and resource samples, the same on every backend.

Backends turn their own event stream (containerd's Events service, the Engine API's ``/events``)
into :class:`ContainerEvent` values delivered through an :class:`EventStream`, and their metrics
(containerd's ``Tasks.Metrics``, the Engine API's ``/containers/{id}/stats``) into
:class:`StatsSample` values. CPU % is computed here, from two samples of cumulative CPU time.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Optional

log = logging.getLogger(__name__)

#: What a view needs to know about a change, across backends (containerd topic / Docker action).
ACTIONS = ("create", "update", "delete", "start", "exit", "pause", "resume", "oom", "task-delete")
#: The action of an event with no container: the stream resubscribed after the daemon restarted and
#: changes made meanwhile were not delivered; list everything again.
RESYNC = "resync"
#: cgroup "no limit" values are near 2**63; anything above this counts as unlimited.
UNLIMITED = 1 << 60
_JOIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class ContainerEvent:
    """One change of one container: ``action`` is one of :data:`ACTIONS`."""

    container_id: str
    action: str
    time: float  # seconds since the epoch, as the daemon stamped it
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StatsSample:
    """Resource use of one container at one moment; counters are cumulative, None where unknown."""

    container_id: str
    read_at: float  # seconds since the epoch
    cpu_ns: int  # CPU time used since the container started
    online_cpus: int
    memory_usage: int  # bytes in use, without reclaimable page cache
    memory_limit: Optional[int]
    memory_rss: Optional[int]
    pids: Optional[int]
    block_read: Optional[int] = None
    block_write: Optional[int] = None
    net_rx: Optional[int] = None
    net_tx: Optional[int] = None


def cpu_percent(first: StatsSample, second: StatsSample) -> float:
    """CPU use between two samples, in % of one core (a busy loop on one core is ~100)."""
    elapsed = second.read_at - first.read_at
    if elapsed <= 0:
        return 0.0
    used = max(second.cpu_ns - first.cpu_ns, 0)
    return used / (elapsed * 1e9) * 100.0


def host_memory_total() -> Optional[int]:
    """MemTotal of this machine in bytes (the limit of a container without one), None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def effective_limit(limit: Optional[int]) -> Optional[int]:
    """A cgroup limit, with "unlimited" shown as the host's memory (as ``docker stats`` does)."""
    if limit is None or limit == 0 or limit >= UNLIMITED:
        return host_memory_total()
    return limit


class EventStream:
    """Container events from a backend, read by one thread of its own until :meth:`close`.

    *source* is an iterator of events that blocks on the daemon; *cancel* makes it stop (it
    ends or raises). Iterate the stream (or call :meth:`get`) to receive the events.
    """

    def __init__(self, source: Iterator[ContainerEvent], cancel: Callable[[], None], *, name: str) -> None:
        self._source = source
        self._cancel = cancel
        self._events: queue.Queue[Optional[ContainerEvent]] = queue.Queue()
        self._closed = threading.Event()
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._read, name=name, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self._source:
                if self._closed.is_set():
                    break
                self._events.put(event)
        except Exception as exc:  # the daemon went away: the consumer sees the end and the error
            if not self._closed.is_set():
                log.debug("event stream %s failed", self._thread.name, exc_info=True)
                self.error = exc
        finally:
            self._events.put(None)

    def get(self, timeout: Optional[float] = None) -> Optional[ContainerEvent]:
        """The next event; None when *timeout* passed or the stream ended (see :attr:`ended`)."""
        if self.ended:
            return None
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if event is None:
            self._events.put(None)  # keep the end visible to later calls
        return event

    @property
    def ended(self) -> bool:
        return self._closed.is_set() and not self._thread.is_alive() and self._events.empty()

    def __iter__(self) -> Iterator[ContainerEvent]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    @property
    def threads(self) -> list[threading.Thread]:
        """The thread(s) this stream runs (empty once closed)."""
        return [self._thread] if self._thread.is_alive() else []

    def close(self) -> None:
        """Stop reading; returns once the reader thread is gone."""
        if self._closed.is_set() and not self._thread.is_alive():
            return
        self._closed.set()
        try:
            self._cancel()
        finally:
            if self._thread is not threading.current_thread():
                self._thread.join(_JOIN_TIMEOUT)
                if self._thread.is_alive():
                    log.warning("event reader %s did not stop within %.0fs", self._thread.name, _JOIN_TIMEOUT)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ACTIONS", "RESYNC", "ContainerEvent", "EventStream", "StatsSample", "cpu_percent", "effective_limit"]
