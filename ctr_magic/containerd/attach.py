"""Start a container with its stdio handed to the caller (``%ctr run`` in the foreground).

The task is created with FIFOs for stdout and stderr (kept apart) and, when asked, stdin, exactly
as an exec's: the shim writes into them, we read. The answer is an :class:`ExecTaskSession`, so
the notebook drives a foreground container the way it drives an exec. The task stays after it
exited (its exit status is read from it; ``%ctr start`` replaces it); ``close()`` kills a task
that still runs and removes the FIFOs.
"""

from __future__ import annotations

import io
import logging
import threading
from typing import Any, Optional

import grpc

from .. import errors
from ..types import ExecTaskResult, ExecTaskSession
from .exec import wait_answered, with_runtime_reason
from .fifo import FifoReader, FifoSet, FifoWriter
from .grpc_errors import map_rpc_error
from .interrupts import deferred_interrupts
from .pb import tasks_pb2
from .runtime_base import Runtime
from .tasks import TasksPart

log = logging.getLogger(__name__)

_READ_BUFFER = 1 << 16


class AttachPart:
    """``start_attached``: the Attaching feature on containerd (task creation shared with TasksPart)."""

    def __init__(self, runtime: Runtime, tasks: TasksPart) -> None:
        self.runtime = runtime
        self.tasks = tasks

    def start_attached(self, container_id: str, *, stdin: bool = False, terminal: bool = False) -> ExecTaskSession:
        """Create and start the task with FIFOs for its stdio; returns at once with the open streams.

        With ``terminal`` (or a container created with a tty) output comes on ``stdout`` only.
        ``stdin`` gives a writable ``stdin`` whose ``close()`` is the process's end of input.
        """
        runtime, tasks = self.runtime, self.tasks
        record = runtime.container_record(container_id)
        terminal = terminal or tasks._spec_has_terminal(record)
        if terminal:
            tasks._ensure_terminal_spec(record)
        rootfs = tasks._rootfs_mounts(record)
        fifos = FifoSet("", stdin=stdin, stdout=True, stderr=not terminal)
        request = tasks_pb2.CreateTaskRequest(container_id=container_id, rootfs=rootfs, terminal=terminal,
                                              stdin=fifos.stdin_path, stdout=fifos.stdout_path,
                                              stderr=fifos.stderr_path)
        wait_future: Any = None
        try:
            try:
                with deferred_interrupts():  # why: TasksPart._discard_task
                    tasks._create_task(request)
            except errors.FailedPrecondition:
                raise  # running already: that task is not ours to remove
            except BaseException:
                tasks._discard_task(container_id)
                raise
            wait_future = runtime.tasks_stub.Wait.future(tasks_pb2.WaitRequest(container_id=container_id),
                                                         metadata=runtime.client.metadata())
            what = f"cannot start container {container_id!r}"
            try:
                with deferred_interrupts():
                    runtime.client.call(runtime.tasks_stub.Start,
                                        tasks_pb2.StartRequest(container_id=container_id), what=what)
            except BaseException as exc:
                tasks._discard_task(container_id)
                if isinstance(exc, errors.CtrError):
                    raise with_runtime_reason(exc, what) from None
                raise
            session = _Attached(runtime, container_id, fifos, wait_future)
        except BaseException:
            if wait_future is not None:
                wait_future.cancel()
            fifos.close()
            raise
        log.info("started container %s attached", container_id)
        return session.as_session()


class _Attached:
    """The state behind the session of an attached task."""

    def __init__(self, runtime: Runtime, container_id: str, fifos: FifoSet, wait_future: Any) -> None:
        self._runtime = runtime
        self.container_id = container_id
        self._fifos = fifos
        self._wait = wait_future
        self._lock = threading.Lock()
        self._closed = False
        self._result: Optional[ExecTaskResult] = None
        self.stdin: Optional[FifoWriter] = None
        if fifos.stdin_path:
            fifos.open_stdin(lambda timeout: wait_answered(wait_future, timeout))
            self.stdin = FifoWriter(fifos.take("stdin"), self._send_eof)  # type: ignore[arg-type]
        self.stdout = io.BufferedReader(FifoReader(fifos.take("stdout"), "stdout"),  # type: ignore[arg-type]
                                        buffer_size=_READ_BUFFER)
        err_fd = fifos.take("stderr")
        self.stderr = (io.BufferedReader(FifoReader(err_fd, "stderr"), buffer_size=_READ_BUFFER)
                       if err_fd is not None else None)

    def _send_eof(self) -> None:
        with self._lock:
            if self._closed:
                return
        self._runtime.client.call(
            self._runtime.tasks_stub.CloseIO, tasks_pb2.CloseIORequest(container_id=self.container_id, stdin=True),
            what=f"closing stdin of container {self.container_id}")

    def wait(self, timeout: Optional[float] = None) -> ExecTaskResult:
        """The exit code once the task exits; Interrupted when *timeout* seconds pass first."""
        if self._result is not None:
            return self._result
        try:
            status = int(self._wait.result(timeout=timeout).exit_status)
        except grpc.FutureTimeoutError:
            raise errors.Interrupted(f"container {self.container_id} still running after {timeout}s",
                                     hint="wait longer, or close() to kill it") from None
        except grpc.RpcError as err:
            raise map_rpc_error(err, f"waiting for container {self.container_id}",
                                self._runtime.client.address) from None
        self._result = ExecTaskResult(exit_code=status)
        return self._result

    def close(self) -> None:
        """Kill the task if it still runs (it stays, stopped), close the streams, remove the FIFOs."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if not self._wait.done():
                try:
                    self._runtime.kill_and_wait(self.container_id)
                except errors.CtrError:
                    log.debug("killing attached container %s", self.container_id, exc_info=True)
        finally:
            self._wait.cancel()
            if self.stdin is not None:
                self.stdin.detach_quietly()
            for stream in (self.stdout, self.stderr):
                if stream is not None:
                    stream.close()
            self._fifos.close()

    def as_session(self) -> ExecTaskSession:
        return ExecTaskSession(stdin=self.stdin, stdout=self.stdout, stderr=self.stderr,  # type: ignore[arg-type]
                               wait=self.wait, close=self.close)


__all__ = ["AttachPart"]
