"""DockerService: the Service contract on the Docker Engine API (see the package docstring for the mapping)."""

from __future__ import annotations

import contextlib
import logging
import signal as _signal
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Optional, Union

from .. import errors
from ..copying import Progress
from ..limits import ResourceLimits
from ..monitoring import EventStream, StatsSample
from ..reference import parse_reference
from ..registry.options import RegistryOptions
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
    SnapshotInfo,
    StartTaskOptions,
    StopTaskOptions,
    TaskInfo,
)
from . import limits
from .api import EngineAPI, socket_from_env
from .archive import FilesPart
from .attach import AttachPart
from .convert import DockerVersion, container_info, container_summary, task_info
from .exec import attach_stdio
from .execpart import ExecPart
from .images import ImagesPart
from .names import ContainerNames, check_name
from .requests import create_body, require, signal_name
from .stopping import StopPart
from .transfer import TransferPart

log = logging.getLogger(__name__)


class DockerService:
    """The Service contract over the Engine API. ``DockerService.connect(socket)`` is the way in.

    A thin front over the parts made in ``__init__``: images (:mod:`.images`), stopping
    (:mod:`.stopping`), exec (:mod:`.execpart`) and, beyond the contract (see
    :mod:`ctr_magic.features`), tag, push, import/export and commit (:mod:`.transfer`), attached
    start (:mod:`.attach`) and copying files (:mod:`.archive`)."""

    backend = "docker"
    namespace = ""  # the Engine API has no namespaces
    #: Seconds an exec stream may stay open after the process exited (None: wait for the daemon).
    exec_hang_grace: Optional[float] = None
    #: The stopping part's class (AppleService brings socktainer's).
    stop_part: type[StopPart] = StopPart

    def __init__(self, api: EngineAPI, *, exec_exit_deadline: float = 10.0) -> None:
        self.api = api
        self.names = ContainerNames(api)
        self.exec_exit_deadline = exec_exit_deadline
        self.images = ImagesPart(api)
        self.stopping = self.stop_part(api, self.names)
        self.execs = ExecPart(api, self.names, self._exec_timing)
        self.transfer = TransferPart(api, self.images, self.names)
        self.attacher = AttachPart(api, self.names)
        self.files = FilesPart(api, self.names)

    def _exec_timing(self) -> tuple[float, Optional[float]]:
        return self.exec_exit_deadline, self.exec_hang_grace

    @classmethod
    def connect(
        cls,
        socket: Optional[str] = None,
        *,
        api_version: str = "",
        timeout: Optional[float] = 60.0,
        **options: Any,
    ) -> DockerService:
        """Connect to the daemon at *socket* (default ``$DOCKER_HOST`` or ``/var/run/docker.sock``)."""
        options.pop("namespace", None)  # accepted for symmetry with containerd; Docker has none
        if options:
            raise errors.InvalidArgument(
                f"unknown Docker option(s): {', '.join(sorted(options))}", hint="known: api_version, timeout"
            )
        return cls(EngineAPI(socket_from_env(socket), api_version=api_version, timeout=timeout))

    @property
    def socket_path(self) -> str:
        return self.api.socket_path

    # -- daemon facts -------------------------------------------------------------------------------
    def ping(self, timeout: float = 5.0) -> bool:
        """True when the daemon answers; raises Unavailable (with a hint) when it does not."""
        return self.api.ping(timeout=timeout)

    def version(self) -> DockerVersion:
        data = self.api.version()
        components = {str(c.get("Name")): str(c.get("Version")) for c in data.get("Components") or []}
        return DockerVersion(
            version=str(data.get("Version", "")),
            api_version=str(data.get("ApiVersion", "")),
            os=str(data.get("Os", "")),
            arch=str(data.get("Arch", "")),
            address=self.api.socket_path,
            components=components,
        )

    def build_image(self, dockerfile: str = "", context: str = ".", *, tags: Optional[list[str]] = None,
                    **options: Any) -> Any:
        """Build an image from a Dockerfile with the Engine's ``/build``; see :mod:`ctr_magic.build`."""
        from ..build import build_image

        return build_image(self, "docker", dockerfile, context, tags=tags, **options)

    def prune_build_cache(self) -> int:
        """``POST /build/prune``: how many cache records the Engine dropped."""
        return len(self.api.build_prune().get("CachesDeleted") or [])

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> DockerService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- images (ImagesPart, TransferPart) -----------------------------------------------------------
    @property
    def registry_options(self) -> RegistryOptions:
        return self.images.registry_options

    @registry_options.setter
    def registry_options(self, options: RegistryOptions) -> None:
        self.images.registry_options = options

    def pull_image(self, ref: str, opts: Optional[PullImageOptions] = None) -> ImageInfo:
        return self.images.pull_image(ref, opts)

    def get_image(self, ref: str) -> ImageInfo:
        return self.images.get_image(ref)

    def list_images(self) -> list[ImageInfo]:
        return self.images.list_images()

    def delete_image(self, ref: str, opts: Optional[DeleteImageOptions] = None) -> None:
        self.images.delete_image(ref, opts)

    def tag_image(self, src: str, dst: str) -> ImageInfo:
        """Give the image *src* the name *dst* (``POST /images/{name}/tag``)."""
        return self.transfer.tag_image(src, dst)

    def push_image(self, ref: str, *, dest: str = "",
                   progress: Optional[Callable[[LayerProgress], None]] = None) -> str:
        """Push *ref* (as *dest* when given: tagged first); returns the manifest digest the registry has."""
        return self.transfer.push_image(ref, dest=dest, progress=progress)

    def import_image(self, source: Union[str, BinaryIO], *, name: str = "", unpack: bool = True) -> list[ImageInfo]:
        """Load a ``docker save`` or OCI-layout tar (path or binary file); *name* tags an unnamed image."""
        return self.transfer.import_image(source, name=name, unpack=unpack)

    def export_image(self, refs: list[str], dest: Union[str, BinaryIO]) -> None:
        """Write *refs* into one tar (``GET /images/get``) that `docker load` and containerd import."""
        self.transfer.export_image(refs, dest)

    def commit_container(self, container_id: str, image_ref: str, *, cmd: Optional[list[str]] = None,
                         env: Optional[list[str]] = None, message: str = "", replace: bool = False,
                         author: str = "") -> ImageInfo:
        """``POST /commit``: the container's files as image *image_ref*; *cmd*/*env* become its changes."""
        return self.transfer.commit_container(container_id, image_ref, cmd=cmd, env=env, message=message,
                                              replace=replace, author=author)

    # -- containers ---------------------------------------------------------------------------------
    def create_container(self, req: CreateContainerRequest) -> ContainerInfo:
        require(req.id, "container id", "give the container a name")
        require(req.image_ref, f"image reference of container {req.id}", "give an image such as busybox:latest")
        check_name(req.id)
        image = str(parse_reference(req.image_ref))
        if req.snapshotter or req.snapshot_id:
            log.debug("container %s: Docker chooses its own storage; snapshotter/snapshot_id ignored", req.id)
        body = create_body(req, image)
        try:
            self.api.container_create(req.id, body)
        except errors.NotFound as exc:
            if "image" not in str(exc).lower():
                raise
            self.pull_image(image)  # as on containerd: an absent image is pulled first
            self.api.container_create(req.id, body)
        return container_info(self.api.container_inspect(req.id))

    def get_container(self, id: str) -> ContainerInfo:
        return container_info(self.names.resolve(id))

    # -- resource limits (features.ResourceUpdates, features.OomReports) -----------------------------
    def update_container(self, container_id: str, new_limits: ResourceLimits) -> None:
        self.api.container_update(self.names.target(container_id), limits.update_body(new_limits))

    def oom_killed(self, container_id: str) -> bool:
        return limits.oom_killed(self.names.resolve(container_id))

    def memory_limit(self, container_id: str) -> int:
        return limits.memory_limit(self.names.resolve(container_id))

    def list_containers(self) -> list[ContainerInfo]:
        return [container_summary(c) for c in self.api.containers(all=True)]

    def list_containers_by_label(self, key: str, value: str) -> list[ContainerInfo]:
        require(key, "label key")
        selector = f"{key}={value}" if value else key
        return [container_summary(c) for c in self.api.containers(all=True, filters={"label": [selector]})]

    def delete_container(self, id: str, opts: Optional[DeleteContainerOptions] = None) -> None:
        opts = opts or DeleteContainerOptions()
        try:
            self.api.container_remove(self.names.target(id), force=opts.force, volumes=opts.cleanup_snapshot)
        except errors.FailedPrecondition as exc:
            if "running" not in str(exc).lower():
                raise
            raise errors.FailedPrecondition(
                f"container {id} is running", hint="stop it first, or delete with force=True"
            ) from None

    # -- tasks --------------------------------------------------------------------------------------
    def start_container(self, container_id: str, opts: Optional[StartTaskOptions] = None) -> None:
        opts = opts or StartTaskOptions()
        if opts.log_path:
            log.debug("container %s: Docker keeps the log itself (logs() reads it)", container_id)
        if opts.terminal or opts.use_stdio:
            data = self.names.resolve(container_id)
            target = data["Id"]
            tty = bool((data.get("Config") or {}).get("Tty"))
            if opts.terminal and not tty:
                raise errors.InvalidArgument(
                    f"container {container_id} was created without a terminal",
                    hint="create it with spec.tty=True to start it with terminal=True",
                )
            if opts.use_stdio:
                attach_stdio(self.api, target, container_id, tty)
        else:
            target = self.names.target(container_id)  # one inspect at most (hex-only names)
        self.api.container_start(target)

    def start_attached(self, container_id: str, *, stdin: bool = False, terminal: bool = False) -> ExecTaskSession:
        """Attach, start, and return at once a session over the container's own stdio."""
        return self.attacher.start_attached(container_id, stdin=stdin, terminal=terminal)

    def stop_container(self, container_id: str, opts: Optional[StopTaskOptions] = None) -> None:
        self.stopping.stop_container(container_id, opts)

    def delete_task(self, container_id: str, opts: Optional[DeleteTaskOptions] = None) -> None:
        self.stopping.delete_task(container_id, opts)

    def get_task_info(self, container_id: str) -> TaskInfo:
        return task_info(self.names.resolve(container_id))

    def list_tasks(self, opts: Optional[ListTasksOptions] = None) -> list[TaskInfo]:
        matches = compile_task_filter(opts.filter if opts else "")
        out = []
        for entry in self.api.containers(all=True):
            if str(entry.get("State", "")).lower() == "created":
                continue  # never started: no task yet
            try:
                info = task_info(self.api.container_inspect(entry["Id"]))
            except errors.NotFound:
                continue  # removed meanwhile
            if matches(info):
                out.append(info)
        return sorted(out, key=lambda t: t.container_id)

    def kill_task(self, container_id: str, signal: int = int(_signal.SIGTERM), *, all: bool = False) -> None:
        """Send *signal* to the container's main process (``all`` is accepted for symmetry: Docker
        signals the main process, and the others end with it)."""
        self.api.container_kill(self.names.target(container_id), signal_name(signal))

    def wait_task(self, container_id: str, timeout: Optional[float] = None) -> int:
        """Block until the container's main process exits; its exit code. Interrupted on timeout."""
        target = self.names.target(container_id)
        try:
            result = self.api.container_wait(target, condition="not-running", timeout=timeout)
        except errors.Interrupted:
            raise errors.Interrupted(f"container {container_id} still running after {timeout:g}s",
                                     hint="wait longer, or stop it") from None
        return int(result.get("StatusCode", 0))

    def logs(
        self, container_id: str, *, follow: bool = False, timeout: Optional[float] = None, tail: Optional[int] = None
    ) -> Iterator[bytes]:
        """Chunks of the container's log, stdout and stderr as they come (Docker keeps every log).

        ``follow=True`` keeps reading until the container exits, or until no output came for
        ``timeout`` seconds.
        """
        pieces = self.iter_logs(container_id, follow=follow, timeout=timeout, tail=tail)
        return (data for _stream, data in pieces)

    def iter_logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        timeout: Optional[float] = None,
        tail: Optional[int] = None,
    ) -> Iterator[tuple[int, bytes]]:
        """``(stream, data)`` pieces of the log: stream 1 is stdout, 2 stderr."""
        data = self.names.resolve(container_id)  # now, so an unknown container fails at the call
        tty = bool((data.get("Config") or {}).get("Tty"))

        def pieces() -> Iterator[tuple[int, bytes]]:
            with contextlib.suppress(errors.Interrupted):  # the follow timeout
                yield from self.api.container_logs(data["Id"], tty=tty, follow=follow, timeout=timeout,
                                                   tail="all" if tail is None else str(int(tail)))

        return pieces()

    def events(self, *, since: str = "", until: str = "", filters: Optional[dict[str, list[str]]] = None
               ) -> Iterator[dict[str, Any]]:
        """The daemon's event stream (see the Engine API's ``GET /events``)."""
        return self.api.events(since=since, until=until, filters=filters)

    # -- live views (features.Events, features.Stats) ---------------------------------------------
    def container_events(self) -> EventStream:
        """A live stream of container changes (``GET /events``); close it to end its thread."""
        from .watch import subscribe

        return subscribe(self.api)

    def container_stats(self, container_id: str) -> StatsSample:
        """One resource sample of a running container (``GET /containers/{id}/stats``)."""
        from .watch import stats

        return stats(self.api, self.names.resolve(container_id), container_id)

    # -- exec ---------------------------------------------------------------------------------------
    def exec_task(self, container_id: str, req: ExecTaskRequest) -> ExecTaskResult:
        return self.execs.exec_task(container_id, req)

    def exec_task_streaming(self, container_id: str, req: ExecTaskRequest) -> ExecTaskSession:
        return self.execs.exec_task_streaming(container_id, req)

    # -- files (FilesPart, features.Copying) ---------------------------------------------------------
    def copy_from_container(self, container_id: str, path: str, dest: str, *,
                            progress: Optional[Progress] = None) -> int:
        """Copy *path* (file or directory) out of the container to the local *dest*; the bytes moved."""
        return self.files.copy_from_container(container_id, path, dest, progress=progress)

    def copy_to_container(self, container_id: str, source: str, path: str, *,
                          progress: Optional[Progress] = None) -> int:
        """Copy the local *source* (file or directory) to *path* in the container; the bytes moved."""
        return self.files.copy_to_container(container_id, source, path, progress=progress)

    # -- network ------------------------------------------------------------------------------------
    def setup_network(self, req: NetworkSetupRequest) -> None:
        """Docker wires networks itself when it creates the container: only checks the container exists."""
        self.names.resolve(req.container_id)
        log.debug("setup_network(%s): Docker manages the container's network", req.container_id)

    def remove_network(self, req: NetworkSetupRequest) -> None:
        self.names.resolve(req.container_id)
        log.debug("remove_network(%s): Docker manages the container's network", req.container_id)

    # -- snapshots ----------------------------------------------------------------------------------
    def _no_snapshots(self, what: str) -> errors.NotSupported:
        return errors.NotSupported(
            f"{what}: snapshots are not supported by the {self.backend} backend (the Engine API does not expose them)",
            hint="use the containerd backend for snapshots",
        )

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


__all__ = ["DockerService", "DockerVersion", "signal_name", "socket_from_env"]
