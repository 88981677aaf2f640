"""Exec into a running task: one-shot (:meth:`exec_task`) and streaming sessions.

The fast path is a handful of RPCs on one channel: Exec, Start (with Wait already in flight),
copy the FIFOs to EOF in the calling thread, take the exit status from Wait, DeleteProcess. The
container's process spec comes from a per-service cache, so no Containers.Get per exec.

Whatever happens (a failed Start, a writer raising, Ctrl-C) the exec process is killed if it
still runs, deleted, and its FIFO directory removed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import secrets
import signal as _signal
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Optional

import grpc
from google.protobuf import any_pb2

from .. import errors
from ..constants import EXEC_ID_PREFIX, PROCESS_TYPE_URL
from ..stdio import caller_stdio, check_stdin, make_sink, stdin_chunks
from ..types import ExecTaskRequest, ExecTaskResult, ExecTaskSession
from .client import wait_settled
from .fifo import FifoReader, FifoSet, FifoWriter, pump
from .grpc_errors import map_rpc_error
from .interrupts import deferred_interrupts
from .pb import task_pb2, tasks_pb2
from .runtime_base import KILL_WAIT, Runtime, check_id
from .spec import ExecProcessOptions, exec_process, to_json_bytes
from .userdb import DirRootfs, UserIds, resolve_user

log = logging.getLogger(__name__)

_READ_BUFFER = 1 << 16
#: How long an exec's wait() waits for a containerd that went away to come back before giving up.
REATTACH_WAIT = 60.0
# Layers of wrapping around what runc said, innermost last.
_RUNTIME_MARKERS = (
    "unable to start container process: ",
    "OCI runtime exec failed: exec failed: ",
    "OCI runtime create failed: ",
    "OCI runtime start failed: ",
    "failed to create shim task: ",
)


def runtime_reason(message: str) -> str:
    """The useful tail of an OCI runtime error (``exec: "nope": executable file not found in $PATH``)."""
    for marker in _RUNTIME_MARKERS:
        if marker in message:
            message = message.rsplit(marker, 1)[1]
            break
    return message.removesuffix(": unknown").strip()


def with_runtime_reason(exc: errors.CtrError, what: str) -> errors.CtrError:
    """*exc* (raised by a call made with ``what=what``) re-worded as one line: what, then runc's reason."""
    details = exc.message[len(what) + 2:] if exc.message.startswith(what + ": ") else exc.message
    return type(exc)(f"{what}: {runtime_reason(details)}", hint=exc.hint)


@dataclass
class _Exec:
    """One exec process being run: ids, FIFOs and the in-flight Wait."""

    container_id: str
    exec_id: str
    fifos: Optional[FifoSet] = None
    wait_future: Any = None
    registered: bool = False
    started: bool = True
    deleted: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class ExecPart:
    """exec_task and exec_task_streaming of the Service contract."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.client = runtime.client
        self.tasks_stub = runtime.tasks_stub
        self._start_locks: dict[str, threading.Lock] = {}  # container id -> its exec Start lock
        self._start_locks_guard = threading.Lock()

    # -- building the request ----------------------------------------------------------------------
    def _exec_user(self, container_id: str, user: str) -> UserIds:
        process = self.runtime.task_process(container_id)
        if process is None or not process.pid:
            raise errors.FailedPrecondition(f"container {container_id!r} has no running task",
                                            hint="start it first (start_container)")
        return resolve_user(user, DirRootfs(f"/proc/{process.pid}/root"))

    def _process_spec(self, container_id: str, req: ExecTaskRequest) -> any_pb2.Any:
        base = self.runtime.container_spec(container_id).get("process") or {}
        opts = ExecProcessOptions(
            args=list(req.args),
            env=list(req.env or []),
            work_dir=req.work_dir,
            terminal=req.terminal,
            user=self._exec_user(container_id, req.user) if req.user else None,
        )
        return any_pb2.Any(type_url=PROCESS_TYPE_URL, value=to_json_bytes(exec_process(base, opts)))

    @staticmethod
    def _check_request(container_id: str, req: ExecTaskRequest) -> None:
        check_id(container_id)
        if req is None:
            raise errors.InvalidArgument("exec needs an ExecTaskRequest")
        if isinstance(req.args, str) or not req.args or not all(isinstance(a, str) for a in req.args):
            raise errors.InvalidArgument(f"exec in {container_id!r}: args must be a non-empty list of strings",
                                         hint="e.g. ExecTaskRequest(args=['ls', '-l'])")
        check_stdin(req.stdin)

    def _start_exec(self, container_id: str, req: ExecTaskRequest, *, stdin: bool, stdout: bool,
                    stderr: bool) -> _Exec:
        """Exec + Start with FIFOs for the streams asked for; on failure nothing is left."""
        spec = self._process_spec(container_id, req)
        run = _Exec(container_id, EXEC_ID_PREFIX + secrets.token_hex(8))
        try:
            if stdin or stdout or stderr:
                run.fifos = FifoSet(req.fifo_dir, stdin=stdin, stdout=stdout, stderr=stderr and not req.terminal)
            fifos = run.fifos
            # Non-terminal exec through the runc shim needs both output paths; /dev/null drops one.
            out_path = fifos.stdout_path if fifos and fifos.stdout_path else ""
            err_path = fifos.stderr_path if fifos and fifos.stderr_path else ""
            if fifos is not None and not req.terminal:
                out_path = out_path or "/dev/null"
                err_path = err_path or "/dev/null"
            request = tasks_pb2.ExecProcessRequest(
                container_id=container_id,
                exec_id=run.exec_id,
                stdin=fifos.stdin_path if fifos else "",
                stdout=out_path,
                stderr=err_path,
                terminal=req.terminal,
                spec=spec,
            )
            self._exec_rpc(request)
            run.registered = True
            md = self.client.metadata()
            with deferred_interrupts():
                run.wait_future = self.tasks_stub.Wait.future(
                    tasks_pb2.WaitRequest(container_id=container_id, exec_id=run.exec_id), metadata=md)
            what = f"exec {list(req.args)!r} in container {container_id!r} failed"
            try:
                with self._start_lock(container_id):
                    self.client.call(self.tasks_stub.Start,
                                     tasks_pb2.StartRequest(container_id=container_id, exec_id=run.exec_id), what=what)
            except errors.CtrError as exc:
                run.started = False
                raise with_runtime_reason(exc, what) from None
        except BaseException:
            self._finish(run, kill=True)
            raise
        return run

    def _exec_rpc(self, request: tasks_pb2.ExecProcessRequest) -> None:
        container_id = request.container_id
        try:
            self.client.call(self.tasks_stub.Exec, request, what=f"exec in container {container_id}")
        except errors.NotFound:
            if self.runtime.task_process(container_id) is None:
                if not self.runtime.container_exists(container_id):
                    raise errors.NotFound(f"container {container_id!r} not found in namespace "
                                          f"{self.runtime.namespace!r}") from None
                raise errors.FailedPrecondition(f"container {container_id!r} has no running task",
                                                hint="start it first (start_container)") from None
            raise
        except errors.CtrError as exc:
            if isinstance(exc, (errors.Interrupted, errors.Unavailable)):
                raise
            process = self.runtime.task_process(container_id)
            if process is not None and process.status != task_pb2.RUNNING:
                raise errors.FailedPrecondition(
                    f"cannot exec in container {container_id!r}: its task is "
                    f"{task_pb2.Status.Name(process.status).lower()}", hint="start it again (start_container)"
                ) from None
            raise

    def _start_lock(self, container_id: str) -> threading.Lock:
        """One exec Start at a time per container.

        The runc shim runs Starts one after another anyway (under its event lock), and with many
        in flight while execs exit, containerd 1.6.20's shim deadlocks for up to a minute (its
        exit queue fills while a Start waits for runc's exit). Queuing here costs nothing.
        Measured (issue 14, 200 concurrent `echo hi` execs on one container, 2 cores): at most 1
        Start in flight 5.8-5.9 s wall; at most 4: 5.0 s and 9.7 s; at most 8: 5.6-5.8 s; no
        limit: 350 s (the shim stall). Everything but the Start (Exec, FIFOs, Wait, output,
        DeleteProcess) already runs in parallel.
        """
        lock = self._start_locks.get(container_id)
        if lock is None:
            with self._start_locks_guard:
                lock = self._start_locks.setdefault(container_id, threading.Lock())
        return lock

    # -- finishing ---------------------------------------------------------------------------------
    def _wait_status(self, run: _Exec, timeout: Optional[float]) -> Optional[int]:
        """The exit status from the in-flight Wait; None on timeout. Ctrl-C propagates.

        When containerd restarts meanwhile, the shim keeps the process and its exit status: Wait is
        asked again (on the exec id) once containerd is back, for up to REATTACH_WAIT seconds.
        """
        what = f"waiting for exec {run.exec_id} in container {run.container_id}"
        deadline = None if timeout is None else time.monotonic() + timeout
        give_up: Optional[float] = None
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                if not wait_settled(run.wait_future, remaining):
                    return None
                with deferred_interrupts():
                    return int(run.wait_future.result().exit_status)
            except grpc.RpcError as err:
                code = err.code() if hasattr(err, "code") else None
                if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) or (
                        code == grpc.StatusCode.DEADLINE_EXCEEDED and give_up is None):
                    raise map_rpc_error(err, what, self.client.address) from None
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return None
            if give_up is None:
                give_up = now + REATTACH_WAIT
                log.info("containerd went away while exec %s ran; waiting for it to come back", run.exec_id)
            elif now >= give_up:
                raise errors.Unavailable(
                    f"{what}: containerd at {self.client.address} restarted or stopped while the exec ran and "
                    f"did not come back within {REATTACH_WAIT:g}s",
                    hint="start it again (`ctr-magic up`); the process keeps running in its shim")
            slice_end = give_up if deadline is None else min(give_up, deadline)
            run.wait_future = self.tasks_stub.Wait.future(
                tasks_pb2.WaitRequest(container_id=run.container_id, exec_id=run.exec_id),
                metadata=self.client.metadata(), wait_for_ready=True, timeout=max(0.05, slice_end - now))

    def _finish(self, run: _Exec, *, kill: bool) -> None:
        """Kill (if asked and still running), delete the process, remove the FIFOs. Idempotent."""
        with run.lock:
            if run.deleted:
                return
            run.deleted = True
        try:
            if run.registered:
                if kill and run.started and run.wait_future is not None and not run.wait_future.done():
                    try:
                        self.runtime.kill_process(run.container_id, _signal.SIGKILL, exec_id=run.exec_id)
                        run.wait_future.result(timeout=KILL_WAIT)  # then deleted anyway
                    except Exception:
                        log.debug("killing exec %s", run.exec_id, exc_info=True)
                with contextlib.suppress(errors.NotFound):
                    self.client.call(self.tasks_stub.DeleteProcess,
                                     tasks_pb2.DeleteProcessRequest(container_id=run.container_id,
                                                                    exec_id=run.exec_id),
                                     what=f"deleting exec {run.exec_id} in container {run.container_id}")
        finally:
            if run.wait_future is not None:
                with deferred_interrupts():
                    run.wait_future.cancel()
            if run.fifos is not None:
                run.fifos.close()

    def _close_stdin_rpc(self, run: _Exec) -> None:
        self.client.call(self.tasks_stub.CloseIO,
                         tasks_pb2.CloseIORequest(container_id=run.container_id, exec_id=run.exec_id, stdin=True),
                         what=f"closing stdin of exec {run.exec_id}")

    # -- one shot ----------------------------------------------------------------------------------
    def exec_task(self, container_id: str, req: ExecTaskRequest) -> ExecTaskResult:
        """Run ``req.args`` in the container's running task; output goes to the given writers.

        Writers may be text or binary streams; ``use_stdio=True`` sends output without a writer
        to this process's stdout/stderr. stdin may be bytes, str or a readable file; its end is
        the process's EOF, except with a terminal, where EOF is typed (end the data with b"\\x04").
        """
        self._check_request(container_id, req)
        sinks: dict[str, Any] = {}
        finishers = []
        for name in ("stdout", "stderr"):
            writer = getattr(req, name)
            if writer is not None:
                sinks[name], finish = make_sink(writer)
                finishers.append(finish)
        if req.use_stdio:
            for name, sink in caller_stdio().items():
                sinks.setdefault(name, sink)
        has_stdin = req.stdin is not None
        run = self._start_exec(container_id, req, stdin=has_stdin, stdout="stdout" in sinks,
                               stderr="stderr" in sinks)
        try:
            if run.fifos is not None:
                if has_stdin:
                    run.fifos.open_stdin(lambda timeout: wait_answered(run.wait_future, timeout))
                # A terminal takes EOF as typed (Ctrl-D): closing its input would hang it up instead.
                send_eof = has_stdin and not req.terminal
                pump(run.fifos, sinks, stdin_chunks(req.stdin) if has_stdin else None,
                     (lambda: self._close_stdin_rpc(run)) if send_eof else None)
            status = self._wait_status(run, None)
            for finish in finishers:
                finish()
        except BaseException:
            self._finish(run, kill=True)
            raise
        self._finish(run, kill=False)
        return ExecTaskResult(exit_code=status if status is not None else -1)

    # -- streaming ---------------------------------------------------------------------------------
    def exec_task_streaming(self, container_id: str, req: ExecTaskRequest) -> ExecTaskSession:
        """Start ``req.args`` and return at once a session with ``stdin``, ``stdout``, ``stderr``,
        ``wait(timeout=None)`` and ``close()`` (also a context manager).

        Streams are binary: ``stdout.read1()`` returns what has arrived, ``readline()`` a line,
        ``read()`` everything to EOF. The process blocks when a pipe is full (back-pressure), so
        read stdout and stderr both (or from two threads) when it writes a lot to each.
        ``stdin.write()`` sends at once; ``stdin.close()`` sends EOF (a hang-up with a terminal).
        ``req.stdin``, if given, is fed on a background thread and then closed.
        """
        self._check_request(container_id, req)
        run = self._start_exec(container_id, req, stdin=True, stdout=True, stderr=True)
        return _Session(self, run, req).as_session()


def wait_answered(future: Any, timeout: float) -> bool:
    """True when the Wait *future* has an answer (the process exited), waiting up to *timeout*."""
    try:
        future.result(timeout=timeout)
    except grpc.FutureTimeoutError:
        return False
    except Exception:  # a failed Wait is an answer too: the caller stops waiting for stdin
        return True
    return True


def _buffered(raw: FifoReader) -> io.BufferedReader:
    """readline/read1/peek over the raw FIFO; read1 returns what has arrived without waiting for more."""
    return io.BufferedReader(raw, buffer_size=_READ_BUFFER)


class _Session:
    """The state behind an ExecTaskSession."""

    def __init__(self, service: ExecPart, run: _Exec, req: ExecTaskRequest) -> None:
        self._service = service
        self._run = run
        fifos = run.fifos
        assert fifos is not None
        try:
            fifos.open_stdin(lambda timeout: wait_answered(run.wait_future, timeout))
            self.stdin = FifoWriter(fifos.take("stdin"), self._send_eof)  # type: ignore[arg-type]
            self.stdout = _buffered(FifoReader(fifos.take("stdout"), "stdout"))  # type: ignore[arg-type]
            err_fd = fifos.take("stderr")
            self.stderr = _buffered(FifoReader(err_fd, "stderr")) if err_fd is not None else None
        except BaseException:
            service._finish(run, kill=True)
            raise
        self._result: Optional[ExecTaskResult] = None
        self._finalizer = weakref.finalize(self, _Session._cleanup, service, run)
        if req.stdin is not None:
            threading.Thread(target=self._feed, args=(req.stdin,), name=f"stdin-{run.exec_id}", daemon=True).start()

    @staticmethod
    def _cleanup(service: ExecPart, run: _Exec) -> None:
        try:
            service._finish(run, kill=True)
        except Exception:
            log.debug("cleaning up exec %s failed", run.exec_id, exc_info=True)

    def _send_eof(self) -> None:
        if not self._run.deleted:
            self._service._close_stdin_rpc(self._run)

    def _feed(self, source: Any) -> None:
        try:
            for chunk in stdin_chunks(source):
                self.stdin.write(chunk)
        except (BrokenPipeError, ValueError):
            log.debug("exec %s stopped reading stdin", self._run.exec_id)
        except Exception:
            log.warning("feeding stdin of exec %s failed", self._run.exec_id, exc_info=True)
        finally:
            self.stdin.close()

    def wait(self, timeout: Optional[float] = None) -> ExecTaskResult:
        """The exit code once the process exits; Interrupted when *timeout* seconds pass first."""
        if self._result is not None:
            return self._result
        if self._run.deleted:
            raise errors.FailedPrecondition(f"exec {self._run.exec_id} was closed before it was waited for")
        status = self._service._wait_status(self._run, timeout)
        if status is None:
            raise errors.Interrupted(f"exec {self._run.exec_id} in container {self._run.container_id} still "
                                     f"running after {timeout}s", hint="wait longer, or close() to kill it")
        self._result = ExecTaskResult(exit_code=status)
        return self._result

    def close(self) -> None:
        """Kill the process if it still runs, delete it, close the streams and remove the FIFOs."""
        if not self.stdin.closed:
            self.stdin.detach_quietly()
        self._finalizer()
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()

    def as_session(self) -> ExecTaskSession:
        return ExecTaskSession(stdin=self.stdin, stdout=self.stdout, stderr=self.stderr,  # type: ignore[arg-type]
                               wait=self.wait, close=self.close)
