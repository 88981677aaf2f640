"""What the dashboard's row buttons do, as plain functions of a service (tested without a browser)."""

from __future__ import annotations

import contextlib
import signal
from typing import Any

from ... import features
from ...errors import CtrError, NotFound
from ...types import DeleteContainerOptions, DeleteTaskOptions, StartTaskOptions, StopTaskOptions, TaskStatus

LOG_LINES = 200


def start(service: Any, container_id: str) -> None:
    """Start the container's task (a stopped task from an earlier run is deleted first)."""
    with contextlib.suppress(NotFound):
        if service.get_task_info(container_id).status != TaskStatus.RUNNING:
            service.delete_task(container_id, DeleteTaskOptions(force=True))
    log_path_for = getattr(service, "log_path_for", None)
    log_path = log_path_for(container_id) if log_path_for is not None else ""
    service.start_container(container_id, StartTaskOptions(log_path=log_path))


def stop(service: Any, container_id: str, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after *timeout* seconds."""
    service.stop_container(container_id, StopTaskOptions(timeout=timeout, force=True))


def kill(service: Any, container_id: str) -> None:
    """SIGKILL at once, without waiting."""
    features.require(service, features.Signals, "dashboard kill").kill_task(container_id, int(signal.SIGKILL))


def remove(service: Any, container_id: str) -> None:
    """Kill the task if any, then remove the container and its snapshot."""
    with contextlib.suppress(NotFound):
        if service.get_task_info(container_id).status in (TaskStatus.RUNNING, TaskStatus.PAUSED):
            service.stop_container(container_id, StopTaskOptions(signal=int(signal.SIGKILL), timeout=5.0, force=True))
    with contextlib.suppress(NotFound):
        service.delete_task(container_id, DeleteTaskOptions(force=True))
    service.delete_container(container_id, DeleteContainerOptions(cleanup_snapshot=True, force=True))


def logs_text(service: Any, container_id: str, lines: int = LOG_LINES) -> str:
    """The last *lines* lines of the container's log, as text."""
    chunks = features.require(service, features.Logs, "dashboard logs").logs(container_id)
    data = b"".join(chunks)
    text = data.decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


ACTIONS = {"start": start, "stop": stop, "kill": kill, "remove": remove}


def run(service: Any, name: str, container_id: str, *, stop_timeout: float = 10.0) -> str:
    """Do action *name* on the container; a one-line error message, or "" when it worked."""
    try:
        if name == "stop":
            stop(service, container_id, stop_timeout)
        else:
            ACTIONS[name](service, container_id)
    except CtrError as exc:
        return str(exc).splitlines()[0]
    return ""


__all__ = ["ACTIONS", "kill", "logs_text", "remove", "run", "start", "stop"]
