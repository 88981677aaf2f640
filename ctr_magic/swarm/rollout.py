"""Waiting for a service to converge: after create, scale and rolling updates, with progress.

The manager answers create/update at once and schedules afterwards; these helpers poll the task
list (one call per round) until the running tasks match the spec, report each change to a
callback, and fail in one line as soon as a task of the current spec is rejected or fails
(a wrong image, a command that exits), instead of waiting for the deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from .. import errors
from .tasks import ServiceTask

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.1
_FAILED = ("failed", "rejected")
#: States in which a task's container may still run (a task told to stop is waited for in these).
_ALIVE = ("assigned", "accepted", "preparing", "ready", "starting", "running")


@dataclass(frozen=True)
class Progress:
    """One step of a rollout: how many tasks run the wanted spec, out of how many wanted."""

    service: str
    running: int
    wanted: int
    state: str  # "converging", "updating", "paused", "completed", "converged"
    message: str = ""

    def __str__(self) -> str:
        tail = f" ({self.message})" if self.message else ""
        return f"{self.service}: {self.running}/{self.wanted} tasks running, {self.state}{tail}"


ProgressCallback = Callable[[Progress], None]


def wait_converged(
    list_tasks: Callable[[], list[ServiceTask]],
    service: str,
    wanted: int,
    *,
    image: str = "",
    update_status: Optional[Callable[[], dict[str, Any]]] = None,
    since: Optional[float] = None,
    timeout: float = 300.0,
    progress: Optional[ProgressCallback] = None,
) -> list[ServiceTask]:
    """Poll until *wanted* tasks run (on *image* when given); the running tasks.

    *update_status* (a rolling update's ``UpdateStatus``) must also say ``completed``. A task of the
    wanted image that failed or was rejected after *since* raises at once with its error.
    """
    deadline = time.monotonic() + timeout
    last: Optional[Progress] = None
    while True:
        tasks = list_tasks()
        running = [t for t in tasks if t.live and (not image or t.image == image)]
        state, message = "converging", ""
        if update_status is not None:
            status = update_status() or {}
            state = str(status.get("State") or "updating")
            message = str(status.get("Message") or "")
            if state in ("paused", "rollback_started", "rollback_paused", "rollback_completed"):
                raise errors.FailedPrecondition(f"rolling update of {service} {state.replace('_', ' ')}: {message}",
                                                hint="see %ctr ps for the tasks' errors; fix and update again")
        failed = _recent_failure(tasks, image, since)
        if failed is not None:
            raise errors.FailedPrecondition(
                f"service {service}: task {failed.name} on {failed.node or 'no node'} {failed.state}: "
                f"{failed.error or failed.message}",
                hint="fix the image or command (%ctr ps shows every task), then %ctr update or %ctr rm",
            )
        stopping = [t for t in tasks if t.desired_state != "running" and t.state in _ALIVE]
        done = len(running) == wanted and not stopping and (update_status is None or state == "completed")
        if done:
            state = "completed" if update_status is not None else "converged"
        step = Progress(service, len(running), wanted, state, message)
        if progress is not None and step != last:
            progress(step)
        last = step
        if done:
            return running
        if time.monotonic() >= deadline:
            raise errors.Interrupted(f"service {service}: {len(running)} of {wanted} tasks running after "
                                     f"{timeout:.0f}s", hint="see %ctr ps for pending tasks and their errors")
        time.sleep(POLL_INTERVAL)


def _recent_failure(tasks: list[ServiceTask], image: str, since: Optional[float]) -> Optional[ServiceTask]:
    for task in tasks:
        if task.state not in _FAILED or (image and task.image != image):
            continue
        if since is not None and (task.updated is None or task.updated.timestamp() < since):
            continue
        return task
    return None


__all__ = ["Progress", "ProgressCallback", "wait_converged"]
