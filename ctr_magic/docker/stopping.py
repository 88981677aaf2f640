"""The stopping part of DockerService: stop a container's task, escalate to SIGKILL, delete the task."""

from __future__ import annotations

import contextlib
import signal as _signal
from typing import Optional

from .. import errors
from ..constants import DEFAULT_STOP_TIMEOUT
from ..types import DeleteTaskOptions, StopTaskOptions, TaskStatus
from .api import EngineAPI
from .convert import task_status
from .names import ContainerNames
from .requests import signal_name

LIVE_STATUSES = (TaskStatus.RUNNING, TaskStatus.PAUSED)
KILL_WAIT = 30.0  # how long to wait for the exit after SIGKILL


class StopPart:
    """Stop signal, a wait with a deadline, then SIGKILL when asked (``POST /kill`` and ``/wait``)."""

    def __init__(self, api: EngineAPI, names: ContainerNames) -> None:
        self.api = api
        self.names = names

    def live_id(self, container_id: str) -> Optional[str]:
        """The full id of a container whose task is alive, or None when there is nothing to stop."""
        data = self.names.resolve(container_id)
        return data["Id"] if task_status(data.get("State")) in LIVE_STATUSES else None

    def stop_container(self, container_id: str, opts: Optional[StopTaskOptions] = None) -> None:
        opts = opts or StopTaskOptions()
        cid = self.live_id(container_id)
        if cid is None:
            return
        self.stop_live(cid, container_id, opts, DEFAULT_STOP_TIMEOUT if opts.timeout is None else opts.timeout)

    def stop_live(self, cid: str, container_id: str, opts: StopTaskOptions, timeout: float) -> None:
        """Stop the live container *cid*: the signal, *timeout* seconds, then :meth:`escalate`."""
        name = signal_name(opts.signal)
        with contextlib.suppress(errors.FailedPrecondition):  # it stopped on its own meanwhile
            self.api.container_kill(cid, name)
        if self.wait_stopped(cid, timeout):
            return
        self.escalate(cid, container_id, f"{timeout:g}s of {name}", opts.force)

    def escalate(self, cid: str, container_id: str, waited: str, force: bool) -> None:
        """The container outlived the stop signal: TaskStopTimeout, or with *force* SIGKILL and wait."""
        if not force:
            raise errors.TaskStopTimeout(
                f"container {container_id} did not stop within {waited}",
                hint="stop it with force=True to send SIGKILL after the timeout",
            )
        with contextlib.suppress(errors.FailedPrecondition):
            self.api.container_kill(cid, "SIGKILL")
        if not self.wait_stopped(cid, KILL_WAIT):
            raise errors.TaskStopTimeout(f"container {container_id} did not stop within {KILL_WAIT:g}s of SIGKILL")

    def wait_stopped(self, cid: str, timeout: float) -> bool:
        try:
            self.api.container_wait(cid, condition="not-running", timeout=max(timeout, 0.001))
            return True
        except errors.Interrupted:
            return task_status(self.api.container_inspect(cid).get("State")) not in LIVE_STATUSES

    def delete_task(self, container_id: str, opts: Optional[DeleteTaskOptions] = None) -> None:
        opts = opts or DeleteTaskOptions()
        data = self.names.resolve(container_id)
        if task_status(data.get("State")) not in LIVE_STATUSES:
            return  # Docker keeps no task object to delete
        if not opts.force:
            raise errors.FailedPrecondition(
                f"the task of container {container_id} is running", hint="stop it first, or use force=True"
            )
        self.stop_container(container_id, StopTaskOptions(signal=int(_signal.SIGKILL), timeout=KILL_WAIT,
                                                          force=True))


__all__ = ["KILL_WAIT", "LIVE_STATUSES", "StopPart"]
