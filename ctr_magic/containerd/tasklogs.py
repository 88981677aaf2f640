"""Reading a task's log file, and following it until the task exits.

The runc shim writes the file (see :mod:`.tasks`); after the exit it may still be copying the last
bytes, so reading waits until the shim has closed the file (or it stopped growing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any, Optional

import grpc

from .pb import task_pb2, tasks_pb2
from .runtime_base import Runtime
from .shimwatch import find_shim, parent_pid, wait_until_closed

log = logging.getLogger(__name__)

_LOG_CHUNK = 1 << 16
#: While following a log, how often the file is checked for growth (the task's exit is an event).
_FOLLOW_INTERVAL = 0.1
#: After the task exited, the shim may still be copying its last bytes; it closes the log file when
#: both copiers are done. How long to wait for that before reading what is there.
_SHIM_CLOSE_DEADLINE = 10.0
#: When the shim's process cannot be inspected: wait for the file to stop growing for this long.
_SETTLE = 0.2


def read_log(runtime: Runtime, container_id: str, path: str, *, follow: bool,
             timeout: Optional[float]) -> Iterator[bytes]:
    """Chunks of *path*; with *follow*, until the task exits (and the shim closed the file) or *timeout*."""
    exit_future = None
    shim_pid = None
    process = runtime.task_process(container_id)
    if process is not None and process.status == task_pb2.STOPPED:
        shim_pid = find_shim(runtime.namespace, container_id)  # it may still be copying the last bytes
    elif process is not None and follow:
        exit_future = runtime.tasks_stub.Wait.future(tasks_pb2.WaitRequest(container_id=container_id),
                                                  metadata=runtime.client.metadata())
        # The task may have exited already, taking the way to its parent with it: then search.
        shim_pid = parent_pid(process.pid) or find_shim(runtime.namespace, container_id)
    log.debug("reading log of %s (task %s, shim pid %s, follow=%s)", container_id,
              task_pb2.Status.Name(process.status) if process is not None else "none", shim_pid, follow)
    deadline = time.monotonic() + timeout if timeout is not None else None
    try:
        with open(path, "rb") as fh:
            if exit_future is None and shim_pid is not None:
                wait_until_closed(shim_pid, path, _SHIM_CLOSE_DEADLINE)
            while True:
                chunk = fh.read(_LOG_CHUNK)
                if chunk:
                    yield chunk
                    continue
                if exit_future is None:
                    return
                if exit_future.done():
                    log.debug("task of %s exited; waiting for shim %s to close the log", container_id, shim_pid)
                    if shim_pid is not None and wait_until_closed(shim_pid, path, _SHIM_CLOSE_DEADLINE):
                        yield from iter(lambda: fh.read(_LOG_CHUNK), b"")
                    else:
                        yield from _drain_settled(fh)
                    return
                wait = _FOLLOW_INTERVAL
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        return
                try:
                    exit_future.result(timeout=wait)
                except grpc.FutureTimeoutError:
                    pass
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        # containerd went away; the shim keeps writing the log. Wait again, queued
                        # until containerd is back, and keep following meanwhile.
                        log.info("containerd went away while following the log of %s", container_id)
                        exit_future = runtime.tasks_stub.Wait.future(
                            tasks_pb2.WaitRequest(container_id=container_id),
                            metadata=runtime.client.metadata(), wait_for_ready=True)
                        continue
                    log.debug("waiting for the exit of %s failed: %s", container_id, exc)
                    exit_future = None  # task deleted under us: read what is there and stop
    finally:
        if exit_future is not None:
            exit_future.cancel()


def _drain_settled(fh: Any) -> Iterator[bytes]:
    """Read until the file has stopped growing for a moment."""
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < _SETTLE:
        chunk = fh.read(_LOG_CHUNK)
        if chunk:
            yield chunk
            quiet_since = time.monotonic()
        else:
            time.sleep(_SETTLE / 4)


__all__ = ["read_log"]
