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
from typing import TYPE_CHECKING, BinaryIO, Optional, Protocol, TypeVar, Union, runtime_checkable

from .errors import NotSupported

if TYPE_CHECKING:
    from .limits import ResourceLimits
    from .types import ImageInfo, LayerProgress, SnapshotCommitResult, SnapshotInfo


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
                         env: Optional[list[str]] = None, message: str = "", replace: bool = False) -> ImageInfo: ...


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
class ResourceUpdates(Protocol):
    def update_container(self, container_id: str, limits: ResourceLimits) -> None: ...


@runtime_checkable
class OomReports(Protocol):
    def oom_killed(self, container_id: str) -> bool: ...

    def memory_limit(self, container_id: str) -> int: ...


@dataclass(frozen=True)
class Feature:
    """A declared feature: its Protocol, what it is called, and the way out when a backend lacks it."""

    protocol: type
    title: str
    way_out: str


FEATURES: tuple[Feature, ...] = (
    Feature(Tagging, "tagging images", "use the containerd or Docker backend (`%ctr use containerd`)"),
    Feature(Pushing, "pushing images", "use the containerd or Docker backend (`%ctr use containerd`)"),
    Feature(ImageArchives, "image import/export", "use the containerd or Docker backend (`%ctr use containerd`)"),
    Feature(Committing, "committing containers to images", "use the containerd or Docker backend"),
    Feature(Checkpoints, "checkpoints", "checkpoints need the containerd backend: `%ctr use containerd`"),
    Feature(SnapshotRemoval, "removing snapshots", "snapshots need the containerd backend: `%ctr use containerd`"),
    Feature(Logs, "container logs", "use the containerd or Docker backend"),
    Feature(Signals, "signals and waits", "use the containerd or Docker backend"),
    Feature(Namespaces, "namespaces", "namespaces need the containerd backend: `%ctr use containerd`"),
    Feature(ResourceUpdates, "changing the limits of a running container",
            "use the containerd or Docker backend, or recreate the container with the new limits"),
    Feature(OomReports, "out-of-memory reports", "use the containerd or Docker backend"),
)

_FeatureT = TypeVar("_FeatureT")


def feature(protocol: type) -> Feature:
    """The declaration of *protocol* (a Protocol listed in :data:`FEATURES`)."""
    for entry in FEATURES:
        if entry.protocol is protocol:
            return entry
    raise KeyError(f"{protocol.__name__} is not a declared feature")


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
    raise NotSupported(f"{what}{entry.title} is not supported on the {backend} backend", hint=entry.way_out)


__all__ = [
    "FEATURES",
    "Checkpoints",
    "Committing",
    "Feature",
    "ImageArchives",
    "Logs",
    "Namespaces",
    "OomReports",
    "Pushing",
    "ResourceUpdates",
    "Signals",
    "SnapshotRemoval",
    "Tagging",
    "feature",
    "require",
    "supports",
]
