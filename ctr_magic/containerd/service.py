"""DefaultService: the Service contract on containerd's gRPC API.

A thin front: every method hands over to one of the parts made in ``__init__`` (images,
containers, tasks, exec, snapshots, network), which share one client, one image store, one
snapshot store and one :class:`~.runtime_base.Runtime`.
"""

from __future__ import annotations

import logging
import signal as signal_module
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Optional, Union

from google.protobuf import empty_pb2

from ..cni import ResultStore
from ..constants import DEFAULT_NAMESPACE, DEFAULT_SOCKET_PATH
from ..errors import FailedPrecondition
from ..limits import ResourceLimits
from ..monitoring import EventStream, StatsSample
from ..registry import RegistryOptions
from ..types import (
    ContainerInfo,
    CreateContainerRequest,
    DeleteContainerOptions,
    DeleteImageOptions,
    DeleteTaskOptions,
    ExecTaskRequest,
    ExecTaskResult,
    ExecTaskSession,
    ImageInfo,
    LayerProgress,
    ListTasksOptions,
    MountInfo,
    NetworkSetupRequest,
    PullImageOptions,
    SnapshotCommitResult,
    SnapshotInfo,
    StartTaskOptions,
    StopTaskOptions,
    TaskInfo,
)
from .attach import AttachPart
from .client import ContainerdClient
from .containers import ContainersPart
from .copy import CopyPart
from .exec import ExecPart
from .images import ImagesPart
from .imagestore import ImageStore
from .leases import Lease
from .network import NetworkPart
from .pb import (
    containers_pb2,
    introspection_pb2,
    introspection_pb2_grpc,
    namespace_pb2,
    namespace_pb2_grpc,
    task_pb2,
    tasks_pb2,
    version_pb2_grpc,
)
from .resources import ResourceControl
from .runtime_base import Runtime
from .snapshots import SnapshotsPart
from .snapshotstore import SnapshotStore
from .tasks import TasksPart

if TYPE_CHECKING:
    from ..build.events import BuildResult

log = logging.getLogger(__name__)


@dataclass
class DaemonVersion:
    version: str
    revision: str
    address: str
    uuid: str = ""


@dataclass
class PluginInfo:
    type: str
    id: str
    status: str
    requires: list[str] = field(default_factory=list)
    error: str = ""


class DefaultService:
    """containerd backend. ``DefaultService.connect(socket, namespace)`` is the usual way in."""

    backend = "containerd"

    def __init__(self, client: ContainerdClient, *, snapshotter: str = "", data_dir: str = "") -> None:
        self.client = client
        self.images = ImageStore(client)
        self.content = self.images.content
        self.snapshot_store = SnapshotStore(client)
        self.runtime = Runtime(client, self.snapshot_store, snapshotter=snapshotter, data_dir=data_dir)
        self.image_part = ImagesPart(client, self.images, snapshotter=self.runtime.snapshotter)
        self.network_part = NetworkPart(self.runtime)
        self.container_part = ContainersPart(self.runtime, self.images, self.network_part, self.image_part.pull_image)
        self.task_part = TasksPart(self.runtime)
        self.exec_part = ExecPart(self.runtime)
        self.snapshot_part = SnapshotsPart(self.runtime, self.container_part)
        self.resource_part = ResourceControl(self.runtime)
        self.attach_part = AttachPart(self.runtime, self.task_part)
        self.copy_part = CopyPart(self.runtime, self._mount_root)

    @classmethod
    def connect(
        cls,
        socket: str = DEFAULT_SOCKET_PATH,
        namespace: str = DEFAULT_NAMESPACE,
        **kwargs: str,
    ) -> DefaultService:
        return cls(ContainerdClient(socket, namespace), **kwargs)

    # -- settings and shared state ------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        return self.client.namespace

    @property
    def snapshotter(self) -> str:
        return self.runtime.snapshotter

    @property
    def data_dir(self) -> str:
        return self.runtime.data_dir

    @property
    def registry_options(self) -> RegistryOptions:
        return self.image_part.registry_options

    @registry_options.setter
    def registry_options(self, options: RegistryOptions) -> None:
        self.image_part.registry_options = options

    @property
    def containers_stub(self) -> Any:
        return self.runtime.containers_stub

    @property
    def tasks_stub(self) -> Any:
        return self.runtime.tasks_stub

    @property
    def snapshots_stub(self) -> Any:
        return self.snapshot_store.stub

    # -- image_part ------------------------------------------------------------
    def pull_image(self, ref: str, opts: Optional[PullImageOptions] = None) -> ImageInfo:
        return self.image_part.pull_image(ref, opts)

    def get_image(self, ref: str) -> ImageInfo:
        return self.image_part.get_image(ref)

    def list_images(self) -> list[ImageInfo]:
        return self.image_part.list_images()

    def delete_image(self, ref: str, opts: Optional[DeleteImageOptions] = None) -> None:
        return self.image_part.delete_image(ref, opts)

    def tag_image(self, src: str, dst: str) -> ImageInfo:
        return self.image_part.tag_image(src, dst)

    def push_image(self, ref: str, *, dest: str = "",
                   progress: Optional[Callable[[LayerProgress], None]] = None) -> str:
        return self.image_part.push_image(ref, dest=dest, progress=progress)

    def import_image(self, source: Union[str, BinaryIO], *, name: str = "", unpack: bool = True) -> list[ImageInfo]:
        return self.image_part.import_image(source, name=name, unpack=unpack)

    def export_image(self, refs: list[str], dest: Union[str, BinaryIO]) -> None:
        return self.image_part.export_image(refs, dest)

    # -- container_part ------------------------------------------------------------
    def create_container(self, req: CreateContainerRequest) -> ContainerInfo:
        return self.container_part.create_container(req)

    def get_container(self, id: str) -> ContainerInfo:
        return self.container_part.get_container(id)

    def list_containers(self) -> list[ContainerInfo]:
        return self.container_part.list_containers()

    def list_containers_by_label(self, key: str, value: str) -> list[ContainerInfo]:
        return self.container_part.list_containers_by_label(key, value)

    def delete_container(self, id: str, opts: Optional[DeleteContainerOptions] = None) -> None:
        return self.container_part.delete_container(id, opts)

    # -- task_part ------------------------------------------------------------
    def log_path_for(self, container_id: str) -> str:
        return self.task_part.log_path_for(container_id)

    def start_container(self, container_id: str, opts: Optional[StartTaskOptions] = None) -> None:
        return self.task_part.start_container(container_id, opts)

    def stop_container(self, container_id: str, opts: Optional[StopTaskOptions] = None) -> None:
        return self.task_part.stop_container(container_id, opts)

    def kill_task(self, container_id: str, signal: int = signal_module.SIGTERM, *, all: bool = False) -> None:
        return self.task_part.kill_task(container_id, signal, all=all)

    def wait_task(self, container_id: str, timeout: Optional[float] = None) -> int:
        return self.task_part.wait_task(container_id, timeout)

    def delete_task(self, container_id: str, opts: Optional[DeleteTaskOptions] = None) -> None:
        return self.task_part.delete_task(container_id, opts)

    def get_task_info(self, container_id: str) -> TaskInfo:
        return self.task_part.get_task_info(container_id)

    def list_tasks(self, opts: Optional[ListTasksOptions] = None) -> list[TaskInfo]:
        return self.task_part.list_tasks(opts)

    def logs(self, container_id: str, *, follow: bool = False, timeout: Optional[float] = None) -> Iterator[bytes]:
        return self.task_part.logs(container_id, follow=follow, timeout=timeout)

    # -- attach_part and copy_part (features Attaching and Copying) ---------------------------------
    def start_attached(self, container_id: str, *, stdin: bool = False, terminal: bool = False) -> ExecTaskSession:
        return self.attach_part.start_attached(container_id, stdin=stdin, terminal=terminal)

    def copy_from_container(self, container_id: str, path: str, dest: str, *,
                            progress: Optional[Callable[[int, int], None]] = None) -> int:
        return self.copy_part.copy_from_container(container_id, path, dest, progress=progress)

    def copy_to_container(self, container_id: str, source: str, path: str, *,
                          progress: Optional[Callable[[int, int], None]] = None) -> int:
        return self.copy_part.copy_to_container(container_id, source, path, progress=progress)

    def _mount_root(self, container_id: str, read_only: bool) -> Any:
        from .mounts import mount_container_snapshot

        return mount_container_snapshot(self, container_id, read_only=read_only)

    # -- exec_part ------------------------------------------------------------
    def exec_task(self, container_id: str, req: ExecTaskRequest) -> ExecTaskResult:
        return self.exec_part.exec_task(container_id, req)

    def exec_task_streaming(self, container_id: str, req: ExecTaskRequest) -> ExecTaskSession:
        return self.exec_part.exec_task_streaming(container_id, req)

    # -- snapshot_part ------------------------------------------------------------
    def commit_snapshot(self, snapshotter: str, name: str, key: str) -> None:
        return self.snapshot_part.commit_snapshot(snapshotter, name, key)

    def prepare_snapshot(self, snapshotter: str, key: str, parent: str) -> None:
        return self.snapshot_part.prepare_snapshot(snapshotter, key, parent)

    def snapshot_mounts(self, snapshotter: str, key: str) -> list[MountInfo]:
        return self.snapshot_part.snapshot_mounts(snapshotter, key)

    def list_snapshots(self, snapshotter: str, *, usage: bool = True) -> list[SnapshotInfo]:
        return self.snapshot_part.list_snapshots(snapshotter, usage=usage)

    def create_container_from_snapshot(self, req: CreateContainerRequest) -> ContainerInfo:
        return self.snapshot_part.create_container_from_snapshot(req)

    def stat_snapshot(self, snapshotter: str, key: str) -> SnapshotInfo:
        return self.snapshot_part.stat_snapshot(snapshotter, key)

    def snapshot_exists(self, snapshotter: str, key: str) -> bool:
        return self.snapshot_part.snapshot_exists(snapshotter, key)

    def snapshot_usage(self, snapshotter: str, key: str) -> tuple[int, int]:
        return self.snapshot_part.snapshot_usage(snapshotter, key)

    def view_snapshot(self, snapshotter: str, key: str, parent: str, *,
                      labels: Optional[dict[str, str]] = None, lease: str = "") -> list[MountInfo]:
        return self.snapshot_part.view_snapshot(snapshotter, key, parent, labels=labels, lease=lease)

    def remove_snapshot(self, snapshotter: str, key: str) -> None:
        return self.snapshot_part.remove_snapshot(snapshotter, key)

    def checkpoint(self, container_id: str, version: str) -> SnapshotCommitResult:
        return self.snapshot_part.checkpoint(container_id, version)

    def list_checkpoints(self, container_id: str = "", snapshotter: str = "") -> list[SnapshotInfo]:
        return self.snapshot_part.list_checkpoints(container_id, snapshotter)

    # -- network_part ------------------------------------------------------------
    def network_store(self) -> ResultStore:
        return self.network_part.network_store()

    def default_cni_conf_dir(self) -> str:
        return self.network_part.default_cni_conf_dir()

    def write_default_network_config(self, conf_dir: str = "", **options: Any) -> str:
        return self.network_part.write_default_network_config(conf_dir, **options)

    def ensure_default_network(self) -> str:
        return self.network_part.ensure_default_network()

    def setup_network(self, req: NetworkSetupRequest) -> None:
        return self.network_part.setup_network(req)

    def remove_network(self, req: NetworkSetupRequest) -> None:
        return self.network_part.remove_network(req)

    def container_ip(self, id: str) -> str:
        return self.network_part.container_ip(id)

    def container_ips(self) -> dict[str, str]:
        return self.network_part.container_ips()

    def has_network(self, container_id: str) -> bool:
        return self.network_part.has_network(container_id)

    # -- runtime ------------------------------------------------------------
    def snapshot_mount_list(self, snapshotter: str, key: str, *, what: str = "") -> list[Any]:
        return self.runtime.snapshot_mount_list(snapshotter, key, what=what)

    def data_root(self) -> str:
        return self.runtime.data_root()

    def container_dir(self, container_id: str) -> str:
        return self.runtime.container_dir(container_id)

    def remove_container_dir(self, container_id: str) -> None:
        return self.runtime.remove_container_dir(container_id)

    def container_record(self, container_id: str) -> containers_pb2.Container:
        return self.runtime.container_record(container_id)

    def container_exists(self, container_id: str) -> bool:
        return self.runtime.container_exists(container_id)

    def update_container_labels(self, container_id: str, labels: dict[str, str]) -> containers_pb2.Container:
        return self.runtime.update_container_labels(container_id, labels)

    def container_spec(self, container_id: str) -> dict[str, Any]:
        return self.runtime.container_spec(container_id)

    def forget_spec(self, container_id: str) -> None:
        return self.runtime.forget_spec(container_id)

    def task_process(self, container_id: str) -> Optional[task_pb2.Process]:
        return self.runtime.task_process(container_id)

    def kill_process(self, container_id: str, signal: int, *, exec_id: str = "", all: bool = False) -> bool:
        return self.runtime.kill_process(container_id, signal, exec_id=exec_id, all=all)

    def remove_task(self, container_id: str) -> Optional[tasks_pb2.DeleteResponse]:
        return self.runtime.remove_task(container_id)

    def signal_and_wait(self, container_id: str, signal: int, timeout: Optional[float], *,
                        all: bool = False) -> tuple[bool, Optional[int]]:
        return self.runtime.signal_and_wait(container_id, signal, timeout, all=all)

    def kill_and_wait(self, container_id: str) -> Optional[int]:
        return self.runtime.kill_and_wait(container_id)

    # -- images from containers ----------------------------------------------------------------------
    def commit_container(self, container_id: str, image_ref: str, *, cmd: Optional[list[str]] = None,
                         env: Optional[list[str]] = None, message: str = "", replace: bool = False,
                         author: str = "") -> ImageInfo:
        """Save the container's files as a new image (``docker commit``); see :mod:`.commit`."""
        from .commit import commit_container

        return commit_container(self, container_id, image_ref, cmd=cmd, env=env, message=message, replace=replace,
                                author=author)

    # -- daemon facts ---------------------------------------------------------------------------
    def version(self, timeout: Optional[float] = 10.0) -> DaemonVersion:
        stub = self.client.stub(version_pb2_grpc.VersionStub)
        resp = self.client.call(stub.Version, empty_pb2.Empty(), what="asking containerd its version",
                                timeout=timeout)
        uuid = ""
        try:
            intro = self.client.stub(introspection_pb2_grpc.IntrospectionStub)
            uuid = self.client.call(intro.Server, empty_pb2.Empty(), what="server info", timeout=timeout).uuid
        except Exception:  # older daemons have no Server RPC; the uuid is a nicety
            log.debug("introspection Server call failed", exc_info=True)
        return DaemonVersion(resp.version, resp.revision, self.client.address, uuid)

    def ping(self, timeout: float = 5.0) -> bool:
        """True when the daemon answers; raises Unavailable (with a hint) when it does not."""
        self.version(timeout=timeout)
        return True

    def namespaces(self) -> list[str]:
        stub = self.client.stub(namespace_pb2_grpc.NamespacesStub)
        resp = self.client.call(stub.List, namespace_pb2.ListNamespacesRequest(), what="listing namespaces")
        return sorted(ns.name for ns in resp.namespaces)

    def delete_namespace(self, name: str = "") -> None:
        """Remove an (empty) namespace, ours by default; containerd refuses one that still holds objects."""
        stub = self.client.stub(namespace_pb2_grpc.NamespacesStub)
        target = name or self.namespace
        request = namespace_pb2.DeleteNamespaceRequest(name=target)
        what = f"deleting namespace {target!r}"
        try:
            self.client.call(stub.Delete, request, what=what)
        except FailedPrecondition:
            # Blobs of just-deleted images linger until the next collection: run one, then try again.
            self.collect_garbage()
            self.client.call(stub.Delete, request, what=what)

    def collect_garbage(self) -> None:
        """Run containerd's garbage collector now and wait for it (deleting a lease with sync does that)."""
        Lease(self.client, "gc").create().delete(sync=True)

    def plugins(self) -> list[PluginInfo]:
        stub = self.client.stub(introspection_pb2_grpc.IntrospectionStub)
        resp = self.client.call(stub.Plugins, introspection_pb2.PluginsRequest(), what="listing plugins")
        out = []
        for plugin in resp.plugins:
            error = plugin.init_err.message if plugin.HasField("init_err") else ""
            out.append(PluginInfo(plugin.type, plugin.id, "error" if error else "ok", list(plugin.requires),
                                  error))
        return out

    # -- live views (features.Events, features.Stats) --------------------------------------------
    def container_events(self) -> EventStream:
        """A live stream of the namespace's container and task changes; close it to end its thread."""
        from .watch import subscribe

        return subscribe(self.client)

    def container_stats(self, container_id: str) -> StatsSample:
        """One resource sample of the container's running task (CPU time, memory, pids, I/O)."""
        from ..types import TaskStatus
        from .metrics import task_sample

        task = self.get_task_info(container_id)
        if task.status not in (TaskStatus.RUNNING, TaskStatus.PAUSED):
            raise FailedPrecondition(f"container {container_id} is {task.status}: nothing to measure",
                                     hint=f"start it first: %ctr start {container_id}")
        return task_sample(self.client, container_id, task.pid)

    def build_image(self, dockerfile: str = "", context: str = ".", *, tags: Optional[list[str]] = None,
                    **options: Any) -> BuildResult:
        """Build an image from a Dockerfile with ctr-magic's own builder; see :mod:`ctr_magic.build`."""
        from ..build import build_image

        return build_image(self, "containerd", dockerfile, context, tags=tags, **options)

    def prune_build_cache(self) -> int:
        """Drop the build cache of this namespace (its layers go with the next garbage collection)."""
        from ..build.cache import BuildCache

        return BuildCache(self, self.snapshotter).prune()

    # -- resource_part (features.ResourceUpdates, features.OomReports) ------------------------------
    def update_container(self, container_id: str, limits: ResourceLimits) -> None:
        """New memory/CPU/pids limits for a running container (``Tasks.Update``), kept for its next start."""
        self.resource_part.update(container_id, limits)

    def oom_killed(self, container_id: str) -> bool:
        """True when the OOM killer took a process of the container's task (ask before deleting the task)."""
        return self.resource_part.oom_killed(container_id)

    def memory_limit(self, container_id: str) -> int:
        return self.resource_part.memory_limit(container_id)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> DefaultService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
