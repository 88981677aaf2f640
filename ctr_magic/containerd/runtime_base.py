"""What the containers, tasks, exec, snapshot and network parts of DefaultService share.

:class:`Runtime` is made once per service: the client, the snapshot store, container records
with a per-container cache of the stored spec (exec reuses it instead of fetching the container
on every call), the task primitives (get, signal, wait for the exit, delete), id checks and the
data directory for per-container files.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal as _signal
from typing import Any, Optional

from google.protobuf import field_mask_pb2

from .. import errors
from ..constants import DATA_SUBDIR, DEFAULT_DATA_DIR, DEFAULT_SNAPSHOTTER, ENV_HOME
from .client import ContainerdClient
from .pb import containers_pb2, containers_pb2_grpc, task_pb2, tasks_pb2, tasks_pb2_grpc
from .snapshotstore import SnapshotStore
from .task_events import ExitWatcher

log = logging.getLogger(__name__)

# containerd's identifier rule (identifiers.Validate), checked here so the error names the fix.
_ID_RE = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
MAX_ID_LENGTH = 76
#: How long a task may take to exit after SIGKILL before TaskStopTimeout.
KILL_WAIT = 10.0


def default_data_dir() -> str:
    """``$CTR_MAGIC_HOME/data`` when CTR_MAGIC_HOME is set, else ``~/.local/share/ctr-magic``."""
    home = os.environ.get(ENV_HOME)
    if home:
        return os.path.join(home, DATA_SUBDIR)
    return os.path.expanduser(DEFAULT_DATA_DIR)


def check_id(value: Any, what: str = "container id") -> str:
    """InvalidArgument unless *value* is an identifier containerd accepts."""
    if not isinstance(value, str) or not value:
        raise errors.InvalidArgument(f"{what} is empty", hint="give a name such as 'box1'")
    if len(value) > MAX_ID_LENGTH or not _ID_RE.match(value):
        raise errors.InvalidArgument(
            f"{what} {value!r} is not valid",
            hint=f"use letters and digits, separated by single '.', '_' or '-' (at most {MAX_ID_LENGTH})",
        )
    return value


class Runtime:
    """The shared plumbing of the containers, tasks, exec, snapshot and network parts."""

    def __init__(self, client: ContainerdClient, snapshots: SnapshotStore, *, snapshotter: str = "",
                 data_dir: str = "") -> None:
        self.client = client
        self.snapshots = snapshots
        self.snapshotter = snapshotter or DEFAULT_SNAPSHOTTER
        self.data_dir = data_dir
        self.containers_stub: Any = client.stub(containers_pb2_grpc.ContainersStub)
        self.tasks_stub: Any = client.stub(tasks_pb2_grpc.TasksStub)
        self._specs: dict[str, dict[str, Any]] = {}  # container id -> its stored OCI spec

    @property
    def namespace(self) -> str:
        return self.client.namespace

    def snapshot_mount_list(self, snapshotter: str, key: str, *, what: str = "") -> list[Any]:
        """The mounts (containerd ``Mount`` messages) of active or view snapshot *key*."""
        return self.snapshots.mounts(snapshotter, key, what=what)

    # -- files -------------------------------------------------------------------------------------
    def data_root(self) -> str:
        """The data directory: ``data_dir=`` given to the service, else :func:`default_data_dir`."""
        return os.path.abspath(self.data_dir or default_data_dir())

    def container_dir(self, container_id: str) -> str:
        """``<data>/<namespace>/containers/<id>``: the container's log, resolv.conf..."""
        return os.path.join(self.data_root(), self.namespace, "containers", container_id)

    def remove_container_dir(self, container_id: str) -> None:
        path = self.container_dir(container_id)
        shutil.rmtree(path, ignore_errors=True)
        for parent in (os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
            try:
                os.rmdir(parent)
            except OSError:
                break

    # -- records -----------------------------------------------------------------------------------
    def container_record(self, container_id: str) -> containers_pb2.Container:
        check_id(container_id)
        try:
            resp = self.client.call(self.containers_stub.Get, containers_pb2.GetContainerRequest(id=container_id),
                                    what=f"container {container_id}")
        except errors.NotFound:
            raise errors.NotFound(f"container {container_id!r} not found in namespace {self.namespace!r}",
                                  hint="list containers with list_containers()") from None
        self.remember_spec(resp.container)
        return resp.container

    def container_exists(self, container_id: str) -> bool:
        try:
            self.container_record(container_id)
        except errors.NotFound:
            return False
        return True

    def update_container_labels(self, container_id: str, labels: dict[str, str]) -> containers_pb2.Container:
        """Set (or, with value "", remove) the named labels only."""
        container = containers_pb2.Container(id=container_id, labels={k: v for k, v in labels.items() if v})
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{key}" for key in labels])
        resp = self.client.call(
            self.containers_stub.Update,
            containers_pb2.UpdateContainerRequest(container=container, update_mask=mask),
            what=f"labelling container {container_id}",
        )
        self.forget_spec(container_id)
        return resp.container

    # -- spec cache --------------------------------------------------------------------------------
    def remember_spec(self, container: containers_pb2.Container) -> None:
        if not container.HasField("spec"):
            return
        try:
            spec = json.loads(container.spec.value)
        except ValueError:
            log.warning("container %s has a spec that is not JSON (type %s)", container.id, container.spec.type_url)
            return
        self._specs[container.id] = spec

    def container_spec(self, container_id: str) -> dict[str, Any]:
        """The container's stored OCI spec (cached; the cache is dropped when ctr-magic changes it)."""
        spec = self._specs.get(container_id)
        if spec is None:
            record = self.container_record(container_id)
            spec = self._specs.get(container_id)
            if spec is None:
                raise errors.FailedPrecondition(
                    f"container {container_id!r} has no OCI spec (type {record.spec.type_url!r})")
        return spec

    def forget_spec(self, container_id: str) -> None:
        self._specs.pop(container_id, None)

    # -- task primitives ---------------------------------------------------------------------------
    def task_process(self, container_id: str) -> Optional[task_pb2.Process]:
        """The container's task (its init process), or None when it has none."""
        try:
            resp = self.client.call(self.tasks_stub.Get, tasks_pb2.GetRequest(container_id=container_id),
                                    what=f"task of container {container_id}")
        except errors.NotFound:
            return None
        return resp.process

    def kill_process(self, container_id: str, signal: int, *, exec_id: str = "", all: bool = False) -> bool:
        """Send *signal*; False when the process had already exited (or never existed)."""
        try:
            self.client.call(
                self.tasks_stub.Kill,
                tasks_pb2.KillRequest(container_id=container_id, exec_id=exec_id, signal=int(signal), all=all),
                what=f"signalling {'exec ' + exec_id + ' in ' if exec_id else 'task of '}container {container_id}",
            )
        except errors.NotFound:
            return False
        return True

    def remove_task(self, container_id: str) -> Optional[tasks_pb2.DeleteResponse]:
        """Delete the (stopped) task; None when there was none."""
        try:
            return self.client.call(self.tasks_stub.Delete, tasks_pb2.DeleteTaskRequest(container_id=container_id),
                                    what=f"deleting the task of container {container_id}")
        except errors.NotFound:
            return None
        except errors.CtrError as exc:
            if "running process" not in exc.message:  # the shim's words; containerd sends code UNKNOWN
                raise
            raise errors.FailedPrecondition(f"cannot delete the task of container {container_id!r}: it is running",
                                            hint="stop it first, or pass force=True") from None

    def signal_and_wait(self, container_id: str, signal: int, timeout: Optional[float], *,
                        all: bool = False) -> tuple[bool, Optional[int]]:
        """Signal the task and wait for its exit through Events: (had_task, exit status or None on timeout)."""
        with ExitWatcher(self.client, container_id) as watcher:
            process = self.task_process(container_id)
            if process is None:
                return False, None
            if process.status == task_pb2.STOPPED:
                return True, process.exit_status
            if not self.kill_process(container_id, signal, all=all):
                # Exiting by itself: the shim may not have noted it yet; its exit event is still to come.
                process = self.task_process(container_id)
                if process is None:
                    return False, None
                if process.status == task_pb2.STOPPED:
                    return True, process.exit_status
            return True, watcher.wait(timeout, pid=process.pid)

    def kill_and_wait(self, container_id: str) -> Optional[int]:
        """SIGKILL every process of the task and wait for its exit (exit status; None without a task).

        TaskStopTimeout if the exit does not come within :data:`KILL_WAIT` seconds.
        """
        had_task, status = self.signal_and_wait(container_id, _signal.SIGKILL, KILL_WAIT, all=True)
        if had_task and status is None:
            raise errors.TaskStopTimeout(f"container {container_id!r} did not exit {KILL_WAIT:g}s after SIGKILL")
        return status

