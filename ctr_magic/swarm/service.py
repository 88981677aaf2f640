"""SwarmService: the Service contract and the cluster features over a Swarm manager.

Mapping decisions (README's backend table says the same):

* A contract *container* is a **service**; its id is the service name. ``create_container``
  makes it with 0 replicas (the wanted count kept in the ``ctr-magic.replicas`` label, default 1),
  ``start_container`` scales it up and waits for its tasks, ``stop_container`` scales it to 0,
  ``delete_container`` removes it (refused while tasks run, unless ``force``).
* ``list_tasks`` lists the swarm's tasks (``container_id`` = service, ``id`` = task id);
  ``get_task_info`` sums a service up (running when any task runs).
* Exec runs on the node of a task, through that node's own engine (see :mod:`.nodes`): the target
  is a service (its first running task), ``service.SLOT``, ``service@node`` or a task id.
* Images are per node: ``get_image``/``list_images``/``delete_image`` ask the manager's engine,
  ``pull_image`` pulls on every node with a known engine. Services always run an image pinned to
  the digest the registry serves, so every node runs the same bytes.
* Snapshots: ``NotSupported``. Networks are Swarm's (at create): the network calls only check.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, Optional

from .. import errors
from ..constants import BACKEND_SWARM
from ..docker.api import EngineAPI
from ..docker.service import DockerService, socket_from_env
from ..taskfilter import compile_task_filter
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
    RuntimeInfo,
    SnapshotInfo,
    StartTaskOptions,
    StopTaskOptions,
    TaskInfo,
    TaskStatus,
)
from .api import SwarmAPI
from .nodes import NodeEngines, SwarmNode, parse_node_option
from .rollout import ProgressCallback
from .services import SERVICE_ID_LABEL, ClusterServices, SwarmServiceInfo
from .specs import REPLICAS_LABEL, ServiceRequest
from .tasks import ServiceTask

log = logging.getLogger(__name__)

_TASK_NAME = re.compile(r"(?P<service>.+)\.(?P<slot>\d+)\Z")
START_WAIT = 300.0


class SwarmService:
    """``SwarmService.connect(manager_socket, nodes={"node2": "/run/n2.sock"})`` is the way in."""

    backend = BACKEND_SWARM
    namespace = ""

    def __init__(self, engine: EngineAPI, *, nodes: Optional[dict[str, str]] = None) -> None:
        self.manager = DockerService(engine)
        self.api = SwarmAPI(engine)
        self.cluster = ClusterServices(self.api)
        self.engines = NodeEngines(nodes)

    @classmethod
    def connect(cls, socket: Optional[str] = None, *, nodes: Optional[dict[str, str]] = None,
                timeout: Optional[float] = 60.0, **options: Any) -> SwarmService:
        options.pop("namespace", None)
        if options:
            raise errors.InvalidArgument(f"unknown Swarm option(s): {', '.join(sorted(options))}",
                                         hint="known: nodes, timeout")
        service = cls(EngineAPI(socket_from_env(socket), timeout=timeout, daemon="the Swarm manager"), nodes=nodes)
        swarm = service.api.info().get("Swarm") or {}
        state = str(swarm.get("LocalNodeState", ""))
        if state != "active" or not swarm.get("ControlAvailable"):
            service.close()
            raise errors.FailedPrecondition(
                f"the engine at {service.manager.socket_path} is not a Swarm manager (swarm state: {state or 'none'})",
                hint="point --socket at a manager's socket, or start a test cluster with `ctr-magic up --swarm 3`",
            )
        return service

    @property
    def socket_path(self) -> str:
        return self.manager.socket_path

    def version(self) -> Any:
        return self.manager.version()

    def close(self) -> None:
        self.engines.close()
        self.manager.close()

    def __enter__(self) -> SwarmService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- cluster features (thin: ClusterServices does the work) ----------------------------------
    def nodes(self) -> list[SwarmNode]:
        return self.cluster.nodes()

    def add_node_endpoint(self, spec: str) -> tuple[str, str]:
        """``NAME=SOCKET``: reach *NAME*'s engine there (for exec, files, stats); checks the node exists."""
        name, socket = parse_node_option(spec)
        node = self.cluster.node(name)
        self.engines.add(node.name, socket)
        return node.name, socket

    def services(self) -> list[SwarmServiceInfo]:
        return self.cluster.list()

    def create_service(self, req: ServiceRequest, *, wait: bool = True, timeout: float = START_WAIT,
                       progress: Optional[ProgressCallback] = None) -> SwarmServiceInfo:
        return self.cluster.create(req, wait=wait, timeout=timeout, progress=progress)

    def service_tasks(self, service: str = "", *, all: bool = True) -> list[ServiceTask]:
        return self.cluster.tasks(service, all=all)

    def scale(self, service: str, replicas: int, *, wait: bool = True, timeout: float = START_WAIT,
              progress: Optional[ProgressCallback] = None) -> SwarmServiceInfo:
        return self.cluster.scale(service, replicas, wait=wait, timeout=timeout, progress=progress)

    def update_service(self, service: str, *, image: str = "", env: Optional[list[str]] = None, wait: bool = True,
                       timeout: float = START_WAIT, progress: Optional[ProgressCallback] = None) -> SwarmServiceInfo:
        return self.cluster.update(service, image=image, env=env, wait=wait, timeout=timeout, progress=progress)

    def remove_service(self, service: str, *, wait: bool = True, timeout: float = 120.0) -> None:
        self.cluster.remove(service, wait=wait, timeout=timeout, containers_left=self._containers_left)

    def pin_image(self, ref: str) -> tuple[str, str]:
        return self.cluster.pin_image(ref)

    def service_logs(self, service: str, *, follow: bool = False, timeout: Optional[float] = None,
                     tail: Optional[int] = None) -> Iterator[tuple[int, str, bytes]]:
        return self.cluster.logs(service, follow=follow, timeout=timeout, tail=tail)

    def logs(self, container_id: str, *, follow: bool = False, timeout: Optional[float] = None,
             tail: Optional[int] = None) -> Iterator[bytes]:
        """Every task's log lines, each prefixed ``service.slot@node | ``."""
        pieces = self.service_logs(container_id, follow=follow, timeout=timeout, tail=tail)
        return (f"{who} | ".encode() + line for _stream, who, line in pieces)

    def _containers_left(self, service_id: str) -> bool:
        """Whether any reachable node still has a container of the service."""
        for node in self.cluster.nodes():
            if node.state != "ready" or self.engines.endpoint(node) is None:
                continue
            engine = self.engines.service_for(node, "checking containers")
            with contextlib.suppress(errors.Unavailable):
                if engine.api.containers(all=True, filters={"label": [f"{SERVICE_ID_LABEL}={service_id}"]}):
                    return True
        return False

    # -- tasks on nodes -------------------------------------------------------------------------
    def task_for(self, target: str) -> ServiceTask:
        """The running task *target* names: a task id (or prefix), ``service.SLOT``, ``service@node``, a service."""
        if not target or not target.strip():
            raise errors.InvalidArgument("task or service name is empty", hint="see %ctr ps")
        tasks = [t for t in self.cluster.tasks() if t.live]
        service, _, node = target.partition("@")
        match = _TASK_NAME.match(service)
        for pick in (
            lambda t: t.id == target or (len(target) >= 6 and t.id.startswith(target)),
            lambda t: match is not None and t.service == match["service"] and t.slot == int(match["slot"])
            and (not node or t.node == node),
            lambda t: t.service == service and (not node or t.node == node),
        ):
            found = [t for t in tasks if pick(t)]
            if found:
                return found[0]
        if node:
            self.cluster.node(node)  # an unknown node is named as such
        raise errors.NotFound(f"no running task {target}",
                              hint="name a service, SERVICE.SLOT, SERVICE@NODE or a task id (see %ctr ps)")

    def engine_of(self, task: ServiceTask, action: str) -> DockerService:
        return self.engines.service_for(self.cluster.node(task.node_id), action)

    def _on_node(self, target: str, action: str) -> tuple[DockerService, str]:
        task = self.task_for(target)
        if not task.container_id:
            raise errors.FailedPrecondition(f"{action}: task {task.name} has no container yet", hint="see %ctr ps")
        return self.engine_of(task, action), task.container_id

    def exec_task(self, container_id: str, req: ExecTaskRequest) -> ExecTaskResult:
        engine, cid = self._on_node(container_id, f"exec in {container_id}")
        return engine.exec_task(cid, req)

    def exec_task_streaming(self, container_id: str, req: ExecTaskRequest) -> ExecTaskSession:
        engine, cid = self._on_node(container_id, f"exec in {container_id}")
        return engine.exec_task_streaming(cid, req)

    def stats(self, target: str) -> dict[str, Any]:
        """One sample of the task's container stats (``GET /containers/{id}/stats``) from its node."""
        from .onnode import container_stats

        engine, cid = self._on_node(target, f"stats of {target}")
        return container_stats(engine.api, cid)

    def copy_from(self, target: str, path: str) -> bytes:
        """A tar archive of *path* in the task's container (from its node's engine)."""
        from .onnode import archive_get

        engine, cid = self._on_node(target, f"copying from {target}")
        return archive_get(engine.api, cid, path)

    def copy_to(self, target: str, dest_dir: str, archive: bytes) -> None:
        """Unpack the tar *archive* into *dest_dir* of the task's container."""
        from .onnode import archive_put

        engine, cid = self._on_node(target, f"copying to {target}")
        archive_put(engine.api, cid, dest_dir, archive)

    # -- the contract: images -------------------------------------------------------------------
    def pull_image(self, ref: str, opts: Optional[PullImageOptions] = None) -> ImageInfo:
        """Pull on the manager and on every ready node whose engine is known."""
        info = self.manager.pull_image(ref, opts)
        for node in self.cluster.nodes():
            if node.role == "manager" or node.state != "ready" or self.engines.endpoint(node) is None:
                continue
            self.engines.service_for(node, f"pulling {ref}").pull_image(ref, PullImageOptions(platform=(
                opts.platform if opts else "")))
        return info

    def push_image(self, ref: str, *, dest: str = "", progress: Optional[Callable[[LayerProgress], None]] = None
                   ) -> str:
        """Push an image of the manager's engine to its registry (or as *dest*); the pushed digest.

        Push to a registry every node reaches: services then run it by that digest.
        """
        from .onnode import push_from_engine

        return push_from_engine(self.manager.api, ref, dest, progress)

    def get_image(self, ref: str) -> ImageInfo:
        return self.manager.get_image(ref)

    def list_images(self) -> list[ImageInfo]:
        return self.manager.list_images()

    def delete_image(self, ref: str, opts: Optional[DeleteImageOptions] = None) -> None:
        self.manager.delete_image(ref, opts)

    # -- the contract: containers are services ------------------------------------------------------
    def create_container(self, req: CreateContainerRequest) -> ContainerInfo:
        labels = dict(req.labels)
        wanted = labels.setdefault(REPLICAS_LABEL, "1")
        if not wanted.isdigit():
            raise errors.InvalidArgument(f"label {REPLICAS_LABEL}={wanted!r} is not a number of replicas")
        spec = req.spec
        service = ServiceRequest(name=req.id, image=req.image_ref, replicas=0, cmd=list(spec.cmd),
                                 env=list(spec.env), mounts=list(spec.mounts), labels=labels, work_dir=spec.work_dir,
                                 user=spec.user, hostname=spec.hostname)
        return _container(self.cluster.create(service, wait=False))

    def get_container(self, id: str) -> ContainerInfo:
        return _container(self.cluster.inspect(id))

    def list_containers(self) -> list[ContainerInfo]:
        return [_container(s) for s in self.cluster.list()]

    def list_containers_by_label(self, key: str, value: str) -> list[ContainerInfo]:
        if not key:
            raise errors.InvalidArgument("label key is empty")
        return [_container(s) for s in self.cluster.list(label=f"{key}={value}" if value else key)]

    def delete_container(self, id: str, opts: Optional[DeleteContainerOptions] = None) -> None:
        opts = opts or DeleteContainerOptions()
        if not opts.force and any(t.live for t in self.cluster.tasks(id, all=False)):
            raise errors.FailedPrecondition(f"service {id} has running tasks",
                                            hint="stop it first (scales to 0), or delete with force")
        self.remove_service(id)

    # -- the contract: tasks --------------------------------------------------------------------
    def start_container(self, container_id: str, opts: Optional[StartTaskOptions] = None) -> None:
        info = self.cluster.inspect(container_id)
        wanted = int(info.labels.get(REPLICAS_LABEL, "1") or 1)
        self.cluster.scale(container_id, wanted, timeout=START_WAIT)

    def stop_container(self, container_id: str, opts: Optional[StopTaskOptions] = None) -> None:
        opts = opts or StopTaskOptions()
        timeout = 10.0 if opts.timeout is None else float(opts.timeout)
        try:
            self.cluster.scale(container_id, 0, timeout=timeout + 30.0)
        except errors.TaskStopTimeout:
            if not opts.force:
                raise

    def delete_task(self, container_id: str, opts: Optional[DeleteTaskOptions] = None) -> None:
        if any(t.live for t in self.cluster.tasks(container_id, all=False)):
            if not (opts and opts.force):
                raise errors.FailedPrecondition(f"the tasks of service {container_id} are running",
                                                hint="stop it first, or use force=True")
            self.cluster.scale(container_id, 0)

    def get_task_info(self, container_id: str) -> TaskInfo:
        info = self.cluster.inspect(container_id)
        tasks = self.cluster.tasks(container_id)
        if any(t.live for t in tasks):
            status = TaskStatus.RUNNING
        elif not tasks:
            status = TaskStatus.CREATED
        else:
            status = TaskStatus.STOPPED
        codes = [t.exit_code for t in tasks if t.exit_code]
        return TaskInfo(container_id=info.name, id=info.id, status=status, exit_code=int(codes[0]) if codes else 0)

    def list_tasks(self, opts: Optional[ListTasksOptions] = None) -> list[TaskInfo]:
        matches = compile_task_filter(opts.filter if opts else "")
        out = [TaskInfo(container_id=t.service, id=t.id, status=t.status, exit_code=t.exit_code or 0)
               for t in self.cluster.tasks()]
        return [t for t in out if matches(t)]

    # -- the contract: network and snapshots ------------------------------------------------------
    def setup_network(self, req: NetworkSetupRequest) -> None:
        """Swarm attaches networks when it creates a task: only checks that the service exists."""
        self.cluster.inspect(req.container_id)

    def remove_network(self, req: NetworkSetupRequest) -> None:
        self.cluster.inspect(req.container_id)

    def _no_snapshots(self, what: str) -> errors.NotSupported:
        return errors.NotSupported(f"{what}: snapshots are not supported by the swarm backend",
                                   hint="use the containerd backend for snapshots (`%ctr use containerd`)")

    def commit_snapshot(self, snapshotter: str, name: str, key: str) -> None:
        raise self._no_snapshots("commit_snapshot")

    def list_snapshots(self, snapshotter: str) -> list[SnapshotInfo]:
        raise self._no_snapshots("list_snapshots")

    def prepare_snapshot(self, snapshotter: str, key: str, parent: str) -> None:
        raise self._no_snapshots("prepare_snapshot")

    def create_container_from_snapshot(self, req: CreateContainerRequest) -> ContainerInfo:
        raise self._no_snapshots("create_container_from_snapshot")

    def snapshot_mounts(self, snapshotter: str, key: str) -> list[MountInfo]:
        raise self._no_snapshots("snapshot_mounts")


def _container(info: SwarmServiceInfo) -> ContainerInfo:
    return ContainerInfo(id=info.name, image=info.image, labels=dict(info.labels), runtime=RuntimeInfo("swarm"),
                         created_at=info.created, updated_at=info.updated)


__all__ = ["BACKEND_SWARM", "SwarmService"]
