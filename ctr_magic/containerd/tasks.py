"""Tasks on containerd: start (no I/O, caller's stdio through FIFOs, terminal, log file), stop,
kill, wait, delete, info, list and logs.

Log files are written by the runc shim itself: given the paths of regular files for stdout and
stderr, it appends the task's output to them, so no copier process runs on our side and the log
outlives this Python process. stderr gets the log through a second name (a symlink): containerd
1.6's shim, given one name for both (its ``file://`` URIs always do that), closes the file when
stdout ends and drops whatever stderr still had in flight, often the end of a traceback. The
path is kept in a container label, so ``logs()`` works from any process. Waiting for an exit
goes through the Events service (see :mod:`.task_events`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal as _signal
from collections.abc import Iterator
from typing import Any, Optional

from google.protobuf import any_pb2, field_mask_pb2

from .. import errors
from ..constants import CONTAINER_LOG_NAME, LABEL_LOG_PATH, SPEC_TYPE_URL
from ..stdio import caller_stdio
from ..taskfilter import compile_task_filter
from ..types import (
    DeleteTaskOptions,
    ListTasksOptions,
    StartTaskOptions,
    StopTaskOptions,
    TaskInfo,
    TaskStatus,
)
from .exec import with_runtime_reason
from .fifo import FifoSet, append_to_file, copy_in_background
from .interrupts import deferred_interrupts
from .pb import containers_pb2, task_pb2, tasks_pb2
from .runtime_base import Runtime, check_id
from .spec import to_json_bytes
from .task_events import ExitWatcher
from .tasklogs import read_log

log = logging.getLogger(__name__)

#: The log's second name in the container's directory, for the shim's stderr copy.
STDERR_ALIAS_NAME = "stderr.log"

_STATUS = {
    task_pb2.UNKNOWN: TaskStatus.UNKNOWN,
    task_pb2.CREATED: TaskStatus.CREATED,
    task_pb2.RUNNING: TaskStatus.RUNNING,
    task_pb2.STOPPED: TaskStatus.STOPPED,
    task_pb2.PAUSED: TaskStatus.PAUSED,
    task_pb2.PAUSING: TaskStatus.PAUSED,
}


def task_info(process: task_pb2.Process, container_id: str = "") -> TaskInfo:
    """Tasks.Get leaves container_id empty in its answer: pass the one asked for."""
    cid = process.container_id or container_id or process.id
    return TaskInfo(
        container_id=cid,
        id=process.id or cid,
        pid=process.pid,
        status=_STATUS.get(process.status, TaskStatus.UNKNOWN),
        exit_code=process.exit_status,
    )


def _signal_name(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


class TasksPart:
    """Task methods of the Service contract plus kill_task, wait_task, logs and log_path_for."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.client = runtime.client
        self.tasks_stub = runtime.tasks_stub
        self.containers_stub = runtime.containers_stub

    def log_path_for(self, container_id: str) -> str:
        """Where ctr-magic keeps a container's log by default: ``<data>/<ns>/containers/<id>/container.log``."""
        check_id(container_id)
        return os.path.join(self.runtime.container_dir(container_id), CONTAINER_LOG_NAME)

    # -- start ---------------------------------------------------------------------------------------
    def start_container(self, container_id: str, opts: Optional[StartTaskOptions] = None) -> None:
        """Create and start the container's task.

        No options: stdio goes nowhere. ``use_stdio``: output copied to this process's
        stdout/stderr through FIFOs in ``fifo_dir`` (a terminal with ``terminal=True``).
        ``log_path``: stdout and stderr appended to that file by the shim (read it back with
        :meth:`logs`); with a terminal the copy runs in this process, so it ends with it.
        A stopped task left from an earlier run is replaced.
        """
        opts = opts or StartTaskOptions()
        if opts.use_stdio and opts.log_path:
            raise errors.InvalidArgument("start_container: use_stdio and log_path exclude each other",
                                         hint="choose one place for the output")
        record = self.runtime.container_record(container_id)
        # runc needs the task's terminal flag to match the spec: a container created with tty=True
        # always gets one; asking for one at start turns it on in the spec.
        terminal = opts.terminal or self._spec_has_terminal(record)
        if opts.terminal:
            self._ensure_terminal_spec(record)
        rootfs = self._rootfs_mounts(record)
        fifos: Optional[FifoSet] = None
        log_copy: Optional[str] = None
        request = tasks_pb2.CreateTaskRequest(container_id=container_id, rootfs=rootfs, terminal=terminal)
        if opts.log_path:
            path = os.path.abspath(opts.log_path)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if terminal:
                # The shim cannot send a console to a file:// URI: copy it from here instead.
                fifos = FifoSet(opts.fifo_dir, stdout=True, stderr=False)
                request.stdout = fifos.stdout_path
                log_copy = path
            else:
                request.stdout, request.stderr = path, self._stderr_alias(container_id, path)
            if record.labels.get(LABEL_LOG_PATH) != path:
                self.runtime.update_container_labels(container_id, {LABEL_LOG_PATH: path})
        elif opts.use_stdio:
            fifos = FifoSet(opts.fifo_dir, stdout=True, stderr=not terminal)
            request.stdout = fifos.stdout_path
            request.stderr = fifos.stderr_path
        elif terminal:
            request.stdout = os.devnull  # the shim's console copy needs a destination
        started = False
        try:
            try:
                with deferred_interrupts():  # see _discard_task: Ctrl-C lands once Create answered
                    self._create_task(request)
            except errors.FailedPrecondition:
                raise  # running already: that task is not ours to remove
            except BaseException:
                self._discard_task(container_id)  # an interrupted Create may still have made it
                raise
            what = f"cannot start container {container_id!r}"
            try:
                with deferred_interrupts():
                    self.client.call(self.tasks_stub.Start, tasks_pb2.StartRequest(container_id=container_id),
                                     what=what)
            except BaseException as exc:
                self._discard_task(container_id)
                if isinstance(exc, errors.CtrError):
                    raise with_runtime_reason(exc, what) from None
                raise
            started = True
        finally:
            if fifos is not None and not started:
                fifos.close()
        if log_copy is not None and fifos is not None:
            write, close = append_to_file(log_copy)
            copy_in_background(fifos, {"stdout": write}, name=container_id, on_done=close)
        elif fifos is not None:
            copy_in_background(fifos, caller_stdio(), name=container_id)
        log.info("started container %s", container_id)

    def _discard_task(self, container_id: str) -> None:
        """Remove a task we made but could not start (or were interrupted starting): nothing stays.

        Create and Start run with Ctrl-C deferred until containerd answered: a Create cancelled while
        the shim was starting left the shim's bundle directory behind (the soak's start trials), and
        the next start then failed with "failed to start shim: mkdir ...: file exists". Both take
        well under a second, so the deferral costs little; the interrupt lands right after, and this
        removes the task containerd did make (its shim and bundle go with it).
        """
        try:
            with deferred_interrupts():
                self._discard_task_now(container_id)
        except Exception:
            log.warning("could not remove the task of %s after a failed start", container_id, exc_info=True)

    def _discard_task_now(self, container_id: str) -> None:
        process = self.runtime.task_process(container_id)
        if process is None:
            return
        if process.status not in (task_pb2.STOPPED, task_pb2.CREATED):
            self.runtime.kill_and_wait(container_id)
        self.runtime.remove_task(container_id)

    def _rootfs_mounts(self, record: containers_pb2.Container) -> list[Any]:
        if not record.snapshot_key:
            return []
        return self.runtime.snapshot_mount_list(
            record.snapshotter, record.snapshot_key,
            what=f"rootfs of container {record.id} (snapshot {record.snapshot_key} in {record.snapshotter})")

    @staticmethod
    def _spec_has_terminal(record: containers_pb2.Container) -> bool:
        try:
            return bool(json.loads(record.spec.value).get("process", {}).get("terminal"))
        except ValueError:
            return False

    def _ensure_terminal_spec(self, record: containers_pb2.Container) -> None:
        """Turn on process.terminal in the stored spec (runc needs it to match the task's flag)."""
        spec = json.loads(record.spec.value)
        process = spec.setdefault("process", {})
        if process.get("terminal"):
            return
        process["terminal"] = True
        env = process.setdefault("env", [])
        if not any(item.split("=", 1)[0] == "TERM" for item in env):
            env.append("TERM=xterm")
        container = containers_pb2.Container(id=record.id, spec=any_pb2.Any(type_url=SPEC_TYPE_URL,
                                                                             value=to_json_bytes(spec)))
        self.client.call(self.containers_stub.Update, containers_pb2.UpdateContainerRequest(
            container=container, update_mask=field_mask_pb2.FieldMask(paths=["spec"])),
            what=f"enabling a terminal for container {record.id}")
        self.runtime.forget_spec(record.id)

    def _stderr_alias(self, container_id: str, log_path: str) -> str:
        """A second name for the log file, for the shim's stderr copy (see the module docstring)."""
        with open(log_path, "ab"):
            pass  # the shim appends to an existing file; it does not create one
        alias = os.path.join(self.runtime.container_dir(container_id), STDERR_ALIAS_NAME)
        os.makedirs(os.path.dirname(alias), exist_ok=True)
        if os.path.islink(alias) and os.readlink(alias) == log_path:
            return alias
        fresh = f"{alias}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fresh)
        os.symlink(log_path, fresh)
        os.replace(fresh, alias)
        return alias

    def _create_task(self, request: tasks_pb2.CreateTaskRequest) -> None:
        container_id = request.container_id
        what = f"cannot create the task of container {container_id!r}"
        for attempt in (1, 2):
            try:
                self.client.call(self.tasks_stub.Create, request, what=what)
                return
            except errors.AlreadyExists:
                process = self.runtime.task_process(container_id)
                if attempt == 2 or process is None or process.status != task_pb2.STOPPED:
                    raise errors.FailedPrecondition(
                        f"container {container_id!r} is already running", hint="stop it first (stop_container)"
                    ) from None
                log.info("replacing the stopped task of %s", container_id)
                self.runtime.remove_task(container_id)
            except errors.CtrError as exc:
                if isinstance(exc, (errors.Interrupted, errors.Unavailable)):
                    raise
                raise with_runtime_reason(exc, what) from None

    # -- stop / kill / wait / delete -------------------------------------------------------------------
    def stop_container(self, container_id: str, opts: Optional[StopTaskOptions] = None) -> None:
        """Signal (SIGTERM) and wait up to ``timeout`` (10 s); then SIGKILL if ``force``, else TaskStopTimeout.

        A container without a running task is left as it is.
        """
        opts = opts or StopTaskOptions()
        check_id(container_id)
        had_task, status = self.runtime.signal_and_wait(container_id, opts.signal, max(0.0, opts.timeout))
        if not had_task:
            self.runtime.container_record(container_id)  # NotFound for an unknown container
            return
        if status is not None:
            return
        name = _signal_name(opts.signal)
        if not opts.force:
            raise errors.TaskStopTimeout(
                f"container {container_id!r} did not stop within {opts.timeout:g}s of {name}",
                hint="pass StopTaskOptions(force=True) to kill it, or a longer timeout")
        log.info("container %s ignored %s for %gs: killing it", container_id, name, opts.timeout)
        self.runtime.kill_and_wait(container_id)

    def kill_task(self, container_id: str, signal: int = _signal.SIGTERM, *, all: bool = False) -> None:
        """Send *signal* to the task (to every process in it with ``all=True``); does not wait."""
        check_id(container_id)
        if not self.runtime.kill_process(container_id, signal, all=all):
            self._require_task(container_id)
            raise errors.FailedPrecondition(f"task of container {container_id!r} is not running")

    def wait_task(self, container_id: str, timeout: Optional[float] = None) -> int:
        """Block until the task exits (an Events subscription, no polling); returns its exit code."""
        check_id(container_id)
        if (process := self._require_task(container_id)).status == task_pb2.STOPPED:
            return process.exit_status  # exited already: no need to watch
        with ExitWatcher(self.client, container_id) as watcher:
            process = self._require_task(container_id)  # it may have exited before the watch began
            if process.status == task_pb2.STOPPED:
                return process.exit_status
            status = watcher.wait(timeout, pid=process.pid)
        if status is None:
            raise errors.Interrupted(f"container {container_id!r} still running after {timeout:g}s",
                                     hint="wait longer, or stop it")
        return status

    def delete_task(self, container_id: str, opts: Optional[DeleteTaskOptions] = None) -> None:
        """Delete the container's (stopped) task; ``force=True`` kills a running one first."""
        opts = opts or DeleteTaskOptions()
        check_id(container_id)
        process = self._require_task(container_id)
        if process.status != task_pb2.STOPPED:
            if not opts.force:
                raise errors.FailedPrecondition(
                    f"task of container {container_id!r} is {task_pb2.Status.Name(process.status).lower()}",
                    hint="stop it first, or pass DeleteTaskOptions(force=True)")
            self.runtime.kill_and_wait(container_id)
        self.runtime.remove_task(container_id)

    def _require_task(self, container_id: str) -> task_pb2.Process:
        process = self.runtime.task_process(container_id)
        if process is None:
            self.runtime.container_record(container_id)  # NotFound naming the container when it does not exist
            raise errors.NotFound(f"container {container_id!r} has no task", hint="start it with start_container")
        return process

    # -- read ----------------------------------------------------------------------------------------
    def get_task_info(self, container_id: str) -> TaskInfo:
        check_id(container_id)
        return task_info(self._require_task(container_id), container_id)

    def list_tasks(self, opts: Optional[ListTasksOptions] = None) -> list[TaskInfo]:
        """Tasks of the namespace; ``filter`` uses containerd's syntax (``container.id==abc``, ``status==running``).

        The filter is passed to containerd and also applied here: containerd 1.6 ignores it.
        """
        opts = opts or ListTasksOptions()
        keep = compile_task_filter(opts.filter)
        resp = self.client.call(self.tasks_stub.List, tasks_pb2.ListTasksRequest(filter=opts.filter),
                                what=f"listing tasks{' (' + opts.filter + ')' if opts.filter else ''}")
        infos = (task_info(p) for p in resp.tasks)
        return sorted((t for t in infos if keep(t)), key=lambda t: t.container_id)

    # -- logs ------------------------------------------------------------------------------------------
    def logs(self, container_id: str, *, follow: bool = False, timeout: Optional[float] = None) -> Iterator[bytes]:
        """Chunks of the container's log file (stdout and stderr, as written).

        ``follow=True`` keeps reading as the task writes and stops when it exits (or after
        ``timeout`` seconds).
        """
        record = self.runtime.container_record(container_id)
        path = record.labels.get(LABEL_LOG_PATH) or self.log_path_for(container_id)
        if not os.path.exists(path):
            raise errors.NotFound(
                f"container {container_id!r} has no log file ({path})",
                hint="start it with StartTaskOptions(log_path=service.log_path_for(id))")
        return read_log(self.runtime, container_id, path, follow=follow, timeout=timeout)
