"""Engine API JSON -> the contract's dataclasses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional, Union

from ..errors import InvalidArgument
from ..reference import normalize
from ..types import ContainerInfo, ImageInfo, RuntimeInfo, TaskInfo, TaskStatus

_FRACTION = re.compile(r"\.(\d+)")

# Docker's State.Status -> the contract's TaskStatus (socktainer uses the same words).
_STATUS = {
    "created": TaskStatus.CREATED,
    "running": TaskStatus.RUNNING,
    "restarting": TaskStatus.RUNNING,
    "paused": TaskStatus.PAUSED,
    "exited": TaskStatus.STOPPED,
    "dead": TaskStatus.STOPPED,
    "removing": TaskStatus.STOPPED,
    "stopped": TaskStatus.STOPPED,
}


def parse_time(value: Union[str, int, float, None]) -> Optional[datetime]:
    """RFC 3339 with nanoseconds, or unix seconds -> aware datetime; Docker's zero time -> None."""
    if value is None or value in ("", 0):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value.strip(), count=1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.year <= 1:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def container_name(data: dict[str, Any]) -> str:
    """The name the contract calls the container id (Docker's ``Name`` without the ``/``)."""
    name = data.get("Name")
    if not name and data.get("Names"):
        name = data["Names"][0]
    return str(name or data.get("Id", "")).lstrip("/")


def task_status(state: Union[dict[str, Any], str, None]) -> TaskStatus:
    if isinstance(state, dict):
        if state.get("Paused"):
            return TaskStatus.PAUSED
        state = state.get("Status", "")
    return _STATUS.get(str(state or "").lower(), TaskStatus.UNKNOWN)


def container_info(data: dict[str, Any]) -> ContainerInfo:
    """From ``GET /containers/{id}/json``."""
    config = data.get("Config") or {}
    state = data.get("State") or {}
    host = data.get("HostConfig") or {}
    networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
    ip = (data.get("NetworkSettings") or {}).get("IPAddress") or next(
        (n.get("IPAddress") for n in networks.values() if n and n.get("IPAddress")), ""
    )
    created = parse_time(data.get("Created"))
    moments = [t for t in (created, parse_time(state.get("StartedAt")), parse_time(state.get("FinishedAt"))) if t]
    return ContainerInfo(
        id=container_name(data),
        image=str(config.get("Image") or data.get("Image") or ""),
        labels=dict(config.get("Labels") or {}),
        snapshotter=str((data.get("GraphDriver") or {}).get("Name") or data.get("Driver") or ""),
        snapshot_key=str(data.get("Id") or ""),
        runtime=RuntimeInfo(name=str(host.get("Runtime") or "")),
        created_at=created,
        updated_at=max(moments) if moments else None,
        ip=str(ip or ""),
    )


def container_summary(data: dict[str, Any]) -> ContainerInfo:
    """From one entry of ``GET /containers/json`` (less detail than inspect)."""
    return ContainerInfo(
        id=container_name(data),
        image=str(data.get("Image") or ""),
        labels=dict(data.get("Labels") or {}),
        snapshot_key=str(data.get("Id") or ""),
        created_at=parse_time(data.get("Created")),
    )


def task_info(data: dict[str, Any]) -> TaskInfo:
    """A container's task as the contract sees it, derived from its state."""
    state = data.get("State") or {}
    if isinstance(state, str):  # a list entry: State is just the word
        return TaskInfo(container_id=container_name(data), id=container_name(data), status=task_status(state))
    return TaskInfo(
        container_id=container_name(data),
        id=container_name(data),
        pid=int(state.get("Pid") or 0),
        status=task_status(state),
        exit_code=int(state.get("ExitCode") or 0),
    )


def _full_name(name: str) -> str:
    try:
        return normalize(name)
    except InvalidArgument:
        return name


def _repo_digest(data: dict[str, Any], name: str) -> str:
    """The manifest (or index) digest Docker recorded for *name*'s repository."""
    repo = name.rsplit("@", 1)[0]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    for entry in data.get("RepoDigests") or []:
        entry_repo, _, digest = entry.partition("@")
        if _full_name(entry_repo + ":x").rsplit(":", 1)[0] == repo:
            return digest
    return ""


def image_info(data: dict[str, Any], name: str = "") -> ImageInfo:
    """From ``GET /images/{name}/json``: the id is the manifest digest when Docker knows it."""
    tags = [_full_name(t) for t in data.get("RepoTags") or [] if t and t != "<none>:<none>"]
    name = _full_name(name) if name else (tags[0] if tags else str(data.get("Id", "")))
    os_, arch, variant = data.get("Os"), data.get("Architecture"), data.get("Variant")
    platform = "/".join(p for p in (os_, arch, variant) if p)
    config = data.get("Config") or {}
    return ImageInfo(
        name=name,
        id=_repo_digest(data, name) or str(data.get("Id", "")),
        tags=tags or [name],
        size=int(data.get("Size") or 0),
        created=parse_time(data.get("Created")),
        platforms=[platform] if platform else [],
        labels=dict(config.get("Labels") or {}),
    )


def image_summaries(data: dict[str, Any]) -> list[ImageInfo]:
    """One ImageInfo per tag of an entry of ``GET /images/json`` (containerd keeps one record per name)."""
    tags = [t for t in data.get("RepoTags") or [] if t and t != "<none>:<none>"]
    names = tags or [d for d in data.get("RepoDigests") or [] if not d.startswith("<none>")] or [data.get("Id", "")]
    out = []
    for tag in names:
        full = _full_name(tag)
        out.append(
            ImageInfo(
                name=full,
                id=_repo_digest(data, full) or str(data.get("Id", "")),
                tags=[full],
                size=int(data.get("Size") or 0),
                created=parse_time(data.get("Created")),
                labels=dict(data.get("Labels") or {}),
            )
        )
    return out


@dataclass
class DockerVersion:
    version: str
    api_version: str
    os: str
    arch: str
    address: str
    components: dict[str, str] = field(default_factory=dict)


__all__ = [
    "DockerVersion",
    "container_info",
    "container_name",
    "container_summary",
    "image_info",
    "image_summaries",
    "parse_time",
    "task_info",
    "task_status",
]
