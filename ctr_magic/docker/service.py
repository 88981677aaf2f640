"""DockerService: the Service contract on the Docker Engine API (see the package docstring for the mapping)."""

from __future__ import annotations

import contextlib
import logging
import signal as _signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, Optional

from .. import errors
from ..constants import DEFAULT_STOP_TIMEOUT
from ..limits import ResourceLimits
from ..monitoring import EventStream, StatsSample
from ..reference import match_stored_name, parse_reference
from ..stdio import WriterSink
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
    ListTasksOptions,
    MountInfo,
    NetworkSetupRequest,
    PullImageOptions,
    SnapshotInfo,
    StartTaskOptions,
    StopTaskOptions,
    TaskInfo,
    TaskStatus,
)
from . import limits
from .api import EngineAPI, socket_from_env
from .archive import DockerFilesMixin
from .attach import DockerAttachMixin
from .convert import (
    DockerVersion,
    container_info,
    container_summary,
    image_info,
    image_summaries,
    task_info,
    task_status,
)
from .exec import ExecProcess, attach_stdio, start_feeder, streaming_session
from .names import ContainerNames, check_name
from .progress import PullProgress
from .requests import create_body, exec_body, require, signal_name
from .transfer import DockerTransferMixin, registry_auth_header

log = logging.getLogger(__name__)

LIVE_STATUSES = (TaskStatus.RUNNING, TaskStatus.PAUSED)
KILL_WAIT = 30.0  # how long to wait for the exit after SIGKILL


class DockerService(DockerTransferMixin, DockerAttachMixin, DockerFilesMixin):
    """The Service contract over the Engine API. ``DockerService.connect(socket)`` is the way in.

    Beyond the contract (see :mod:`ctr_magic.features`): tag, push, import/export and commit
    (:mod:`.transfer`), attached start (:mod:`.attach`), copying files (:mod:`.archive`)."""

    backend = "docker"
    namespace = ""  # the Engine API has no namespaces
    #: Seconds an exec stream may stay open after the process exited (None: wait for the daemon).
    exec_hang_grace: Optional[float] = None

    def __init__(self, api: EngineAPI, *, exec_exit_deadline: float = 10.0) -> None:
        self.api = api
        self.names = ContainerNames(api)
        self.exec_exit_deadline = exec_exit_deadline

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

    # -- images -------------------------------------------------------------------------------------
    def pull_image(self, ref: str, opts: Optional[PullImageOptions] = None) -> ImageInfo:
        opts = opts or PullImageOptions()
        parsed = parse_reference(ref)
        full = str(parsed)
        if not opts.unpack or opts.snapshotter:
            log.debug("%s: Docker always unpacks into its own storage driver", full)
        progress = PullProgress(full, opts.progress)
        self.api.image_pull(parsed.name, parsed.digest or parsed.tag, platform=opts.platform,
                            on_event=progress, what=f"pulling image {full}",
                            auth=registry_auth_header(parsed.domain, self.registry_options))
        lookup = f"{parsed.name}@{parsed.digest}" if parsed.digest else full
        return image_info(self.api.image_inspect(lookup), name=full)

    def get_image(self, ref: str) -> ImageInfo:
        require(ref, "image reference", "give a name such as busybox:latest")
        full = str(parse_reference(ref))
        try:
            return image_info(self.api.image_inspect(full), name=full)
        except errors.NotFound:
            pass
        names = [info.name for info in self.list_images()]
        found = match_stored_name(ref, names)
        if found is None:
            raise errors.NotFound(f"image {ref} not found", hint="pull it first, or check list_images()")
        return image_info(self.api.image_inspect(found), name=found)

    def list_images(self) -> list[ImageInfo]:
        out: list[ImageInfo] = []
        for entry in self.api.images():
            out.extend(image_summaries(entry))
        return sorted(out, key=lambda info: info.name)

    def delete_image(self, ref: str, opts: Optional[DeleteImageOptions] = None) -> None:
        # Docker deletes synchronously, so DeleteImageOptions.synchronous needs nothing more.
        parsed = parse_reference(ref)
        name = f"{parsed.name}@{parsed.digest}" if parsed.digest else str(parsed)
        self.api.image_remove(name)

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

    def _live_id(self, container_id: str) -> Optional[str]:
        """The full id of a container whose task is alive, or None when there is nothing to stop."""
        data = self.names.resolve(container_id)
        return data["Id"] if task_status(data.get("State")) in LIVE_STATUSES else None

    def stop_container(self, container_id: str, opts: Optional[StopTaskOptions] = None) -> None:
        opts = opts or StopTaskOptions()
        cid = self._live_id(container_id)
        if cid is None:
            return
        self._stop(cid, container_id, opts, DEFAULT_STOP_TIMEOUT if opts.timeout is None else opts.timeout)

    def _stop(self, cid: str, container_id: str, opts: StopTaskOptions, timeout: float) -> None:
        """Stop the live container *cid*: the signal, *timeout* seconds, then :meth:`_escalate_stop`."""
        name = signal_name(opts.signal)
        with contextlib.suppress(errors.FailedPrecondition):  # it stopped on its own meanwhile
            self.api.container_kill(cid, name)
        if self._wait_stopped(cid, timeout):
            return
        self._escalate_stop(cid, container_id, f"{timeout:g}s of {name}", opts.force)

    def _escalate_stop(self, cid: str, container_id: str, waited: str, force: bool) -> None:
        """The container outlived the stop signal: TaskStopTimeout, or with *force* SIGKILL and wait."""
        if not force:
            raise errors.TaskStopTimeout(
                f"container {container_id} did not stop within {waited}",
                hint="stop it with force=True to send SIGKILL after the timeout",
            )
        with contextlib.suppress(errors.FailedPrecondition):
            self.api.container_kill(cid, "SIGKILL")
        if not self._wait_stopped(cid, KILL_WAIT):
            raise errors.TaskStopTimeout(f"container {container_id} did not stop within {KILL_WAIT:g}s of SIGKILL")

    def _wait_stopped(self, cid: str, timeout: float) -> bool:
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
        return ExecProcess(self.api, container_id, exec_id, conn, tty=bool(req.terminal), args=list(body["Cmd"]),
                           exit_deadline=self.exec_exit_deadline, hang_grace=self.exec_hang_grace)

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
