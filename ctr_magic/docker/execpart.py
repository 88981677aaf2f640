"""The exec part of DockerService: run a process in a running container, collected or streamed."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Optional

from .. import errors
from ..stdio import WriterSink
from ..types import ExecTaskRequest, ExecTaskResult, ExecTaskSession
from .api import EngineAPI
from .exec import ExecProcess, start_feeder, streaming_session
from .names import ContainerNames
from .requests import exec_body, require

#: (seconds an exec may take to report its exit, seconds a stream may stay open after it; None: no limit)
ExecTiming = Callable[[], tuple[float, Optional[float]]]


class ExecPart:
    """``POST /containers/{id}/exec`` and ``/exec/{id}/start``; *timing* is read at each exec."""

    def __init__(self, api: EngineAPI, names: ContainerNames, timing: ExecTiming) -> None:
        self.api = api
        self.names = names
        self.timing = timing

    def _exec(self, container_id: str, req: ExecTaskRequest, *, attach_stdin: bool) -> ExecProcess:
        require(container_id, "container id")
        if not req.args or not str(req.args[0]).strip():
            raise errors.InvalidArgument(f"exec in container {container_id}: args are empty",
                                         hint="give the command to run, e.g. ['sh', '-c', 'echo hi']")
        target = self.names.target(container_id)
        body = exec_body(req, attach_stdin=attach_stdin)
        try:
            exec_id = self.api.exec_create(target, body)
        except errors.FailedPrecondition as exc:  # not running, or paused
            detail = exc.message.rsplit(": ", 1)[-1]
            raise errors.FailedPrecondition(f"exec in container {container_id}: {detail}",
                                            hint="start it first (start_container)") from None
        conn = self.api.exec_start(exec_id, tty=bool(req.terminal))
        exit_deadline, hang_grace = self.timing()
        return ExecProcess(self.api, container_id, exec_id, conn, tty=bool(req.terminal), args=list(body["Cmd"]),
                           exit_deadline=exit_deadline, hang_grace=hang_grace)

    def exec_task(self, container_id: str, req: ExecTaskRequest) -> ExecTaskResult:
        process = self._exec(container_id, req, attach_stdin=req.stdin is not None)
        feeder: Optional[threading.Thread] = None
        out = WriterSink(req.stdout if req.stdout is not None else (sys.stdout if req.use_stdio else None))
        err = WriterSink(req.stderr if req.stderr is not None else (sys.stderr if req.use_stdio else None))
        try:
            if req.stdin is not None:
                feeder = start_feeder(process, req.stdin)
            process.pump(out, err)
            if isinstance(process.error, KeyboardInterrupt):
                raise process.error
            if process.error is not None:  # the caller's writer failed: nobody reads the rest
                process.kill()
                raise process.error
            out.finish()
            err.finish()
            return ExecTaskResult(exit_code=process.exit_code())
        except KeyboardInterrupt:
            process.kill()
            raise
        finally:
            process.close()
            if feeder is not None:
                feeder.join(5.0)

    def exec_task_streaming(self, container_id: str, req: ExecTaskRequest) -> ExecTaskSession:
        process = self._exec(container_id, req, attach_stdin=True)
        session = streaming_session(process)
        if req.stdin is not None:
            start_feeder(process, req.stdin)
        return session


__all__ = ["ExecPart", "ExecTiming"]
