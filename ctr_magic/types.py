"""Plain data types of the Service contract (see shared CONTRACT.md)."""

from __future__ import annotations

import enum
import signal as _signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Optional

from .limits import ResourceLimits


class TaskStatus(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    RUNNING = 2
    STOPPED = 3
    PAUSED = 4

    def __str__(self) -> str:
        return self.name.lower()


@dataclass
class ImageInfo:
    name: str
    id: str
    tags: list[str] = field(default_factory=list)
    size: int = 0
    created: Optional[datetime] = None
    platforms: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    media_type: str = ""


@dataclass
class RuntimeInfo:
    name: str = ""


@dataclass
class ContainerInfo:
    id: str
    image: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    snapshotter: str = ""
    snapshot_key: str = ""
    runtime: RuntimeInfo = field(default_factory=RuntimeInfo)
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None
    ip: str = ""


@dataclass
class MountSpec:
    destination: str
    type: str = "bind"
    source: str = ""
    options: list[str] = field(default_factory=list)


@dataclass
class ContainerSpec:
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    work_dir: str = ""
    user: str = ""
    tty: bool = False
    mounts: list[MountSpec] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    hostname: str = ""
    host_dns: bool = False
    host_timezone: bool = False
    #: keep stdin open for an attached start with input (Docker must know at create time)
    stdin: bool = False
    limits: ResourceLimits = field(default_factory=ResourceLimits)  # memory, CPU, pids, shm, rlimits, read-only


@dataclass
class CreateContainerRequest:
    id: str
    image_ref: str
    snapshot_id: str = ""
    snapshotter: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    spec: ContainerSpec = field(default_factory=ContainerSpec)


@dataclass
class LayerProgress:
    """One progress event of a pull or push, per blob (layer, config or manifest)."""

    ref: str
    digest: str
    media_type: str = ""
    done: int = 0
    total: int = 0
    # waiting | downloading | exists | done | unpacking | unpacked | uploading | error
    state: str = "waiting"


@dataclass
class PullImageOptions:
    unpack: bool = True
    snapshotter: str = ""
    platform: str = ""
    progress: Optional[Callable[[LayerProgress], None]] = None
    timeout: Optional[float] = None  # seconds for the whole pull; None waits as long as it takes


@dataclass
class DeleteImageOptions:
    synchronous: bool = False


@dataclass
class DeleteContainerOptions:
    cleanup_snapshot: bool = True
    force: bool = False


@dataclass
class StartTaskOptions:
    use_stdio: bool = False
    terminal: bool = False
    fifo_dir: str = ""
    log_path: str = ""


@dataclass
class StopTaskOptions:
    signal: int = int(_signal.SIGTERM)
    timeout: float = 10.0
    force: bool = False


@dataclass
class DeleteTaskOptions:
    force: bool = False


@dataclass
class ListTasksOptions:
    filter: str = ""


@dataclass
class TaskInfo:
    container_id: str
    id: str = ""
    pid: int = 0
    status: TaskStatus = TaskStatus.UNKNOWN
    exit_code: int = 0


@dataclass
class ExecTaskRequest:
    args: list[str]
    env: list[str] = field(default_factory=list)
    work_dir: str = ""
    terminal: bool = False
    stdin: Any = None  # bytes, str or a readable file
    stdout: Optional[IO[Any]] = None
    stderr: Optional[IO[Any]] = None
    use_stdio: bool = False
    fifo_dir: str = ""
    user: str = ""


@dataclass
class ExecTaskResult:
    exit_code: int


@dataclass
class ExecTaskSession:
    """A running exec: write ``stdin``, read ``stdout``/``stderr``, then ``wait()``."""

    stdin: Optional[IO[bytes]]
    stdout: Optional[IO[bytes]]
    stderr: Optional[IO[bytes]]
    wait: Callable[..., ExecTaskResult]
    close: Callable[[], None]

    def __enter__(self) -> ExecTaskSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class SnapshotInfo:
    name: str
    parent: str = ""
    kind: str = ""
    created: Optional[datetime] = None
    updated: Optional[datetime] = None
    labels: dict[str, str] = field(default_factory=dict)
    size: int = 0
    inodes: int = 0


@dataclass
class MountInfo:
    type: str
    source: str
    options: list[str] = field(default_factory=list)


@dataclass
class SnapshotCommitResult:
    version_snapshot_name: str
    active_snapshot_name: str


@dataclass
class NetworkSetupRequest:
    container_id: str
    cni_bin_dir: str = "/usr/lib/cni"
    cni_conf_dir: str = ""


@dataclass
class MountedSnapshot:
    dir: str
    info: ContainerInfo
    unmount: Callable[[], None]

    def __enter__(self) -> MountedSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount()


__all__ = [
    "ContainerInfo",
    "ContainerSpec",
    "CreateContainerRequest",
    "DeleteContainerOptions",
    "DeleteImageOptions",
    "DeleteTaskOptions",
    "ExecTaskRequest",
    "ExecTaskResult",
    "ExecTaskSession",
    "ImageInfo",
    "LayerProgress",
    "ListTasksOptions",
    "MountInfo",
    "MountSpec",
    "MountedSnapshot",
    "NetworkSetupRequest",
    "PullImageOptions",
    "RuntimeInfo",
    "SnapshotCommitResult",
    "SnapshotInfo",
    "StartTaskOptions",
    "StopTaskOptions",
    "TaskInfo",
    "TaskStatus",
]
