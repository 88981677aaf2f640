"""Container events (``GET /events``) and resource samples (``GET /containers/{id}/stats``) on the Engine API.

The event stream is read from a socket of its own so that closing it wakes the reader at once.
Docker sends the response head before it registers the subscriber, so the stream asks for the
events *since* the moment it was opened: a change made right after :func:`subscribe` returns is
replayed from the daemon's event log rather than lost.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Optional
from urllib.parse import urlencode

from .. import errors
from ..monitoring import RESYNC, ContainerEvent, EventStream, StatsSample, effective_limit
from .api import EngineAPI
from .transport import HijackedConnection

log = logging.getLogger(__name__)

# Docker's container actions -> ours (others, e.g. "exec_start", are ignored).
_ACTIONS = {
    "create": "create",
    "update": "update",
    "rename": "update",
    "destroy": "delete",
    "start": "start",
    "restart": "start",
    "die": "exit",
    "pause": "pause",
    "unpause": "resume",
    "oom": "oom",
}


def decode(message: dict[str, Any]) -> Optional[ContainerEvent]:
    """Our ContainerEvent of one ``/events`` message; None for other types and actions."""
    if str(message.get("Type") or message.get("type") or "") != "container":
        return None
    action = _ACTIONS.get(str(message.get("Action") or message.get("status") or "").split(":", 1)[0])
    if action is None:
        return None
    actor = message.get("Actor") or {}
    attributes = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
    container_id = attributes.get("name") or str(actor.get("ID") or message.get("id") or "")
    if "exitCode" in attributes:
        attributes["exit_status"] = attributes["exitCode"]
    nanos = message.get("timeNano")
    stamp = int(nanos) / 1e9 if nanos else float(message.get("time") or time.time())
    return ContainerEvent(container_id, action, stamp, attributes)


def _lines(conn: HijackedConnection) -> Iterator[bytes]:
    pending = b""
    while True:
        data = conn.recv(65536)
        if not data:
            return
        pending += data
        *lines, pending = pending.split(b"\n")
        yield from (line for line in lines if line.strip())


def _events(conn: HijackedConnection) -> Iterator[ContainerEvent]:
    try:
        for line in _lines(conn):
            try:
                event = decode(json.loads(line))
            except ValueError:
                log.debug("events: not JSON: %r", line[:200])
                continue
            if event is not None:
                yield event
    finally:
        conn.close()


def _open(api: EngineAPI, since: float) -> HijackedConnection:
    params = {"since": f"{since:.9f}", "filters": json.dumps({"type": ["container"]})}
    path = api._path("/events") + "?" + urlencode(params)
    return api.transport.hijack(path, None, what="subscribing to events", method="GET", upgrade=False)


class _ResumingEvents:
    """``/events`` read over one connection after another: when dockerd goes away the response ends;
    once it answers again (within *resume_within* seconds) the stream reopens, asking for the events
    since the last one it saw, and yields ``resync`` (a restarted dockerd has lost its event log)."""

    def __init__(self, api: EngineAPI, resume_within: float) -> None:
        self._api = api
        self._resume_within = resume_within
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._last = time.time()
        self._conn = _open(api, self._last)

    def cancel(self) -> None:
        self._closed.set()
        with self._lock:
            self._conn.shutdown()

    def events(self) -> Iterator[ContainerEvent]:
        while True:
            try:
                for event in _events(self._conn):
                    self._last = max(self._last, event.time)
                    yield event
            except OSError:
                pass  # the connection broke: same as its end
            if self._closed.is_set():
                return
            log.info("the Engine API event stream ended: waiting for dockerd to come back")
            if not self._wait_for_daemon():
                raise errors.Unavailable("the Docker daemon went away and did not come back within "
                                         f"{self._resume_within:.0f}s; the event stream ended",
                                         hint="start it again, then open a new view")
            with self._lock:
                if self._closed.is_set():
                    return
                self._conn = _open(self._api, self._last)
            yield ContainerEvent("", RESYNC, time.time())

    def _wait_for_daemon(self) -> bool:
        deadline = time.monotonic() + self._resume_within
        while not self._closed.is_set() and time.monotonic() < deadline:
            try:
                if self._api.ping(timeout=1.0):
                    return not self._closed.is_set()
            except errors.CtrError:
                pass
            self._closed.wait(0.2)
        return False


def subscribe(api: EngineAPI, *, resume_within: float = 600.0) -> EventStream:
    """A live stream of the daemon's container events; close it to end its thread.

    A dockerd restart does not end it: it reopens once dockerd answers and yields ``resync``.
    """
    source = _ResumingEvents(api, resume_within)
    return EventStream(source.events(), source.cancel, name=f"docker-events-{id(source):x}")


def _parse_read(stamp: str) -> float:
    """The stats' ``read`` time (RFC 3339 with nanoseconds) in epoch seconds; now if absent."""
    if not stamp or stamp.startswith("0001-"):
        return time.time()
    head, _, frac = stamp.rstrip("Z").partition(".")
    digits = "".join(ch for ch in frac if ch.isdigit())
    zone = "+00:00"
    for sign in ("+", "-"):
        if sign in frac:
            zone = sign + frac.split(sign, 1)[1]
    try:
        base = datetime.fromisoformat(head + zone).timestamp()
    except ValueError:
        return time.time()
    return base + (int(digits) / 10 ** len(digits) if digits else 0.0)


def sample_from(container_id: str, data: dict[str, Any]) -> StatsSample:
    """A StatsSample from one ``/containers/{id}/stats`` answer (cgroup v1 or v2 host)."""
    cpu = data.get("cpu_stats") or {}
    memory = data.get("memory_stats") or {}
    stats = memory.get("stats") or {}
    inactive = stats.get("total_inactive_file", stats.get("inactive_file", 0)) or 0
    rss = stats.get("total_rss", stats.get("rss", stats.get("anon")))
    blkio = (data.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    networks = data.get("networks")
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    return StatsSample(
        container_id=container_id,
        read_at=_parse_read(str(data.get("read") or "")),
        cpu_ns=int((cpu.get("cpu_usage") or {}).get("total_usage") or 0),
        online_cpus=int(online),
        memory_usage=max(int(memory.get("usage") or 0) - int(inactive), 0),
        memory_limit=effective_limit(int(memory.get("limit") or 0)),
        memory_rss=None if rss is None else int(rss),
        pids=(data.get("pids_stats") or {}).get("current"),
        block_read=sum(int(e.get("value") or 0) for e in blkio if str(e.get("op", "")).lower() == "read"),
        block_write=sum(int(e.get("value") or 0) for e in blkio if str(e.get("op", "")).lower() == "write"),
        net_rx=None if networks is None else sum(int(n.get("rx_bytes") or 0) for n in networks.values()),
        net_tx=None if networks is None else sum(int(n.get("tx_bytes") or 0) for n in networks.values()),
    )


def stats(api: EngineAPI, inspected: dict[str, Any], container_id: str) -> StatsSample:
    """One sample of the container *inspected*; FailedPrecondition when it is not running."""
    if not (inspected.get("State") or {}).get("Running"):
        raise errors.FailedPrecondition(f"container {container_id} is not running: nothing to measure",
                                        hint=f"start it first: %ctr start {container_id}")
    target = str(inspected.get("Id") or container_id)
    params = {"stream": "0"}
    if api.api_at_least("1.41"):
        params["one-shot"] = "1"  # no second, one-second-later sample: we take our own
    data = api._call("GET", f"/containers/{target}/stats", params=params,
                     what=f"reading the stats of container {container_id}", kind="container").json()
    return sample_from(container_id, data)


__all__ = ["decode", "sample_from", "stats", "subscribe"]
