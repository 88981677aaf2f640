"""The backend surface beyond the 23-method contract, declared once.

The :class:`~ctr_magic.service.Service` contract is what every backend must do. Everything else a
magic or a widget uses (tagging, pushing, commit, logs, signals, events, stats, build, …) is a
*feature*: a small ``Protocol`` with the methods it needs, plus what to tell a person whose backend
lacks it. A backend states a feature simply by implementing its methods; :func:`require` is the one
place that asks, and turns "this backend has no such method" into a one-line ``NotSupported`` with
the way out, never an ``AttributeError``.

New features are added here, next to the others, as a Protocol and one :class:`Feature` entry in
:data:`FEATURES`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Optional, Protocol, TypeVar, Union, runtime_checkable

from .errors import NotSupported

if TYPE_CHECKING:
    from .build.events import BuildResult
    from .limits import ResourceLimits
    from .monitoring import EventStream, StatsSample
    from .types import ExecTaskSession, ImageInfo, LayerProgress, SnapshotCommitResult, SnapshotInfo


@runtime_checkable
class Tagging(Protocol):
    def tag_image(self, src: str, dst: str) -> ImageInfo: ...


@runtime_checkable
class Pushing(Protocol):
    def push_image(self, ref: str, *, dest: str = "",
                   progress: Optional[Callable[[LayerProgress], None]] = None) -> str: ...


@runtime_checkable
class ImageArchives(Protocol):
    def import_image(self, source: Union[str, BinaryIO], *, name: str = "", unpack: bool = True) -> list[ImageInfo]: ...

    def export_image(self, refs: list[str], dest: Union[str, BinaryIO]) -> None: ...


@runtime_checkable
class Committing(Protocol):
    def commit_container(self, container_id: str, image_ref: str, *, cmd: Optional[list[str]] = None,
                         env: Optional[list[str]] = None, message: str = "", replace: bool = False,
                         author: str = "") -> ImageInfo: ...


@runtime_checkable
class Checkpoints(Protocol):
    def checkpoint(self, container_id: str, version: str) -> SnapshotCommitResult: ...

    def list_checkpoints(self, container_id: str = "", snapshotter: str = "") -> list[SnapshotInfo]: ...


@runtime_checkable
class SnapshotRemoval(Protocol):
    def remove_snapshot(self, snapshotter: str, key: str) -> None: ...


@runtime_checkable
class Logs(Protocol):
    def logs(self, container_id: str, *, follow: bool = False, timeout: Optional[float] = None) -> Iterator[bytes]: ...


@runtime_checkable
class Signals(Protocol):
    def kill_task(self, container_id: str, signal: int = 15, *, all: bool = False) -> None: ...

    def wait_task(self, container_id: str, timeout: Optional[float] = None) -> int: ...


@runtime_checkable
class Namespaces(Protocol):
    def namespaces(self) -> list[str]: ...

    def delete_namespace(self, name: str = "") -> None: ...


@runtime_checkable
class Build(Protocol):
    def build_image(self, dockerfile: str = "", context: str = ".", *, tags: Optional[list[str]] = None,
                    **options: Any) -> BuildResult: ...

    def prune_build_cache(self) -> int: ...


@runtime_checkable
class ResourceUpdates(Protocol):
    def update_container(self, container_id: str, limits: ResourceLimits) -> None: ...


@runtime_checkable
class OomReports(Protocol):
    def oom_killed(self, container_id: str) -> bool: ...

    def memory_limit(self, container_id: str) -> int: ...


@runtime_checkable
class DaemonFacts(Protocol):
    def version(self) -> object: ...


@runtime_checkable
class LogFiles(Protocol):
    """A backend whose logs are files ctr-magic names (containerd); Docker keeps its own."""

    def log_path_for(self, container_id: str) -> str: ...


@runtime_checkable
class ContainerAddresses(Protocol):
    """Addresses ctr-magic gave containers on its own bridge (CNI on containerd)."""

    def container_ip(self, id: str) -> str: ...

    def container_ips(self) -> dict[str, str]: ...

    def has_network(self, container_id: str) -> bool: ...


@runtime_checkable
class Attaching(Protocol):
    """Start a container with its own stdin/stdout/stderr handed to the caller (``%ctr run`` in the foreground)."""

    def start_attached(self, container_id: str, *, stdin: bool = False, terminal: bool = False) -> ExecTaskSession: ...


@runtime_checkable
class Copying(Protocol):
    """Files and directories in and out of a container (``%ctr cp``); both return the bytes copied."""

    def copy_from_container(self, container_id: str, path: str, dest: str, *,
                            progress: Optional[Callable[[int, int], None]] = None) -> int: ...

    def copy_to_container(self, container_id: str, source: str, path: str, *,
                          progress: Optional[Callable[[int, int], None]] = None) -> int: ...


@runtime_checkable
class Events(Protocol):
    """A live stream of container changes (the dashboard follows it)."""

    def container_events(self) -> EventStream: ...


@runtime_checkable
class Stats(Protocol):
    """Resource samples of a running container (``%ctr stats``, the dashboard's CPU and memory)."""

    def container_stats(self, container_id: str) -> StatsSample: ...


# -- cluster features (the swarm backend) -----------------------------------------------------------


@runtime_checkable
class ClusterServices(Protocol):
    def create_service(self, req: Any, *, wait: bool = True, timeout: float = 300.0,
                       progress: Optional[Callable[[Any], None]] = None) -> Any: ...

    def service_tasks(self, service: str = "", *, all: bool = True) -> list[Any]: ...

    def services(self) -> list[Any]: ...

    def remove_service(self, service: str, *, wait: bool = True, timeout: float = 120.0) -> None: ...

    def pin_image(self, ref: str) -> tuple[str, str]: ...


@runtime_checkable
class ClusterNodes(Protocol):
    def nodes(self) -> list[Any]: ...

    def add_node_endpoint(self, spec: str) -> tuple[str, str]: ...


@runtime_checkable
class Scaling(Protocol):
    def scale(self, service: str, replicas: int, *, wait: bool = True, timeout: float = 300.0,
              progress: Optional[Callable[[Any], None]] = None) -> Any: ...


@runtime_checkable
class RollingUpdates(Protocol):
    def update_service(self, service: str, *, image: str = "", env: Optional[list[str]] = None, wait: bool = True,
                       timeout: float = 300.0, progress: Optional[Callable[[Any], None]] = None) -> Any: ...


_CLUSTER_WAY_OUT = "use a Swarm manager: `%ctr use swarm --socket MANAGER` (or `%ctr up --swarm 3`)"


@dataclass(frozen=True)
class Feature:
    """A declared feature: its Protocol, what it is called, and the way out when a backend lacks it.

    ``commands`` are the ``%ctr`` subcommands that need it (README's table lists them); ``notes``
    says, per backend name, how it is done there or what is missing.
    """

    protocol: type
    title: str
    way_out: str
    commands: tuple[str, ...] = ()
    notes: tuple[tuple[str, str], ...] = ()


FEATURES: tuple[Feature, ...] = (
    Feature(Tagging, "tagging images", "use the containerd or Docker backend (`%ctr use containerd`)",
            commands=("tag",), notes=(("docker", "`POST /images/{name}/tag`"),)),
    Feature(Pushing, "pushing images", "use the containerd or Docker backend (`%ctr use containerd`)",
            commands=("push",), notes=(("docker", "`POST /images/{name}/push`, credentials as for pull"),)),
    Feature(ImageArchives, "image import/export", "use the containerd or Docker backend (`%ctr use containerd`)",
            commands=("import", "export"),
            notes=(("docker", "`/images/load` (docker-save and OCI tars), `/images/get`"),)),
    Feature(Committing, "committing containers to images", "use the containerd or Docker backend",
            commands=("commit",), notes=(("docker", "`POST /commit`"),)),
    Feature(Checkpoints, "checkpoints", "checkpoints need the containerd backend: `%ctr use containerd`",
            commands=("checkpoint", "checkpoints")),
    Feature(SnapshotRemoval, "removing snapshots", "snapshots need the containerd backend: `%ctr use containerd`",
            commands=("checkpoint --rm",)),
    Feature(Logs, "container logs", "use the containerd or Docker backend", commands=("logs",),
            notes=(("containerd", "log files written by the shim"), ("apple", "every line arrives as stdout"))),
    Feature(Signals, "signals and waits", "use the containerd or Docker backend", commands=("kill", "run")),
    Feature(Namespaces, "namespaces", "namespaces need the containerd backend: `%ctr use containerd`",
            commands=("ns ls", "ns rm")),
    Feature(DaemonFacts, "daemon version", "every backend has it", commands=("version", "up")),
    Feature(LogFiles, "log files named by ctr-magic", "the Docker backend keeps logs itself: nothing to do",
            commands=("run -d", "start")),
    Feature(ContainerAddresses, "bridge addresses in `%ctr ps`",
            "Docker networks its containers itself: `%ctr inspect ID` shows the address", commands=("ps", "net up")),
    Feature(Attaching, "foreground `run` with its own stdio", "run it detached (`-d`) and read `%ctr logs -f`",
            commands=("run",), notes=(("containerd", "FIFOs"), ("docker", "`/containers/{id}/attach`"))),
    Feature(Copying, "copying files in and out (`cp`)", "use the containerd or Docker backend", commands=("cp",),
            notes=(("containerd", "through the task's root (or the mounted snapshot when stopped)"),
                   ("docker", "`/containers/{id}/archive`"))),
    Feature(Events, "container events", "use the containerd or Docker backend; `%ctr ps` lists containers",
            commands=("dashboard",),
            notes=(("containerd", "Events service, confirmed live before use"), ("docker", "`GET /events`"),
                   ("apple", "`GET /events`, filtered by ctr-magic"))),
    Feature(Stats, "container stats", "use the containerd or Docker backend", commands=("stats", "dashboard"),
            notes=(("containerd", "`Tasks.Metrics` (cgroup v1 and v2); network bytes from /proc on this host"),
                   ("docker", "`GET /containers/{id}/stats`"), ("apple", "tested only on the dockerd stand-in"))),
    Feature(Build, "building images from a Dockerfile", "use the containerd or Docker backend",
            commands=("build",), notes=(("containerd", "ctr-magic's own builder on snapshots"),
                                        ("docker", "`POST /build`"),
                                        ("apple", "`POST /build`; unverified on socktainer"))),
    Feature(ClusterServices, "services with replicas", _CLUSTER_WAY_OUT),
    Feature(ClusterNodes, "cluster nodes", _CLUSTER_WAY_OUT),
    Feature(Scaling, "scaling services", _CLUSTER_WAY_OUT),
    Feature(RollingUpdates, "rolling updates", _CLUSTER_WAY_OUT),
    Feature(ResourceUpdates, "changing the limits of a running container",
            "use the containerd or Docker backend, or recreate the container with the new limits",
            commands=("update --memory/--cpus",),
            notes=(("containerd", "`Tasks.Update`, kept in the container's spec"),
                   ("docker", "`POST /containers/{id}/update`"))),
    Feature(OomReports, "out-of-memory reports", "use the containerd or Docker backend",
            commands=("run", "py"),
            notes=(("containerd", "the cgroup's OOM-kill counter"), ("docker", "`State.OOMKilled`"))),
)

_FeatureT = TypeVar("_FeatureT")


def feature(protocol: type) -> Feature:
    """The declaration of *protocol* (a Protocol listed in :data:`FEATURES`)."""
    for entry in FEATURES:
        if entry.protocol is protocol:
            return entry
    raise KeyError(f"{protocol.__name__} is not a declared feature")


def members(protocol: type) -> list[str]:
    """The methods a feature Protocol asks for."""
    return sorted(name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_"))


def implemented_by(cls: type, protocol: type) -> bool:
    """True when the class *cls* defines every method of the feature *protocol* (no instance needed)."""
    return all(callable(getattr(cls, name, None)) for name in members(protocol))


def supports(service: object, protocol: type) -> bool:
    """True when *service* implements every method of the feature *protocol*."""
    return isinstance(service, protocol)


def require(service: object, protocol: type[_FeatureT], action: str = "") -> _FeatureT:
    """*service* as the feature *protocol*, or ``NotSupported`` in one line with the way out.

    *action* names what the user tried (``"%ctr tag"``); the message names the backend.
    """
    if isinstance(service, protocol):
        return service
    entry = feature(protocol)
    backend = getattr(service, "backend", type(service).__name__)
    what = f"{action}: " if action else ""
    raise NotSupported(f"{what}the {backend} backend does not support {entry.title}", hint=entry.way_out)


__all__ = [
    "FEATURES",
    "Attaching",
    "Build",
    "Checkpoints",
    "ClusterNodes",
    "ClusterServices",
    "Committing",
    "ContainerAddresses",
    "Copying",
    "DaemonFacts",
    "Events",
    "Feature",
    "ImageArchives",
    "LogFiles",
    "Logs",
    "Namespaces",
    "OomReports",
    "Pushing",
    "ResourceUpdates",
    "RollingUpdates",
    "Scaling",
    "Signals",
    "SnapshotRemoval",
    "Stats",
    "Tagging",
    "feature",
    "implemented_by",
    "members",
    "require",
    "supports",
]
