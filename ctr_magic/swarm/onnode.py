"""Calls to one engine beyond DockerService: container stats, files (tar archives), pushing an image."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, Optional

from .. import errors
from ..docker.api import EngineAPI, read_json_lines
from ..reference import parse_reference
from ..types import LayerProgress


def _path(api: EngineAPI, path: str) -> str:
    return f"/v{api.api_version}{path}"


def container_stats(api: EngineAPI, container_id: str) -> dict[str, Any]:
    """One stats sample: CPU and memory figures as the engine reports them (``stream=false``)."""
    resp = api.transport.request("GET", _path(api, f"/containers/{container_id}/stats"),
                                 params={"stream": "false"}, what=f"reading stats of container {container_id[:12]}",
                                 kind="container")
    data = resp.json()
    memory = data.get("memory_stats") or {}
    cpu = data.get("cpu_stats") or {}
    return {
        "container": container_id,
        "memory": int(memory.get("usage") or 0),
        "memory_limit": int(memory.get("limit") or 0),
        "cpu_total_ns": int((cpu.get("cpu_usage") or {}).get("total_usage") or 0),
        "pids": int((data.get("pids_stats") or {}).get("current") or 0),
        "raw": data,
    }


def archive_get(api: EngineAPI, container_id: str, path: str) -> bytes:
    """A tar archive of *path* in the container (``GET /containers/{id}/archive``)."""
    resp = api.transport.request("GET", _path(api, f"/containers/{container_id}/archive"), params={"path": path},
                                 what=f"copying {path} from container {container_id[:12]}", kind="container")
    return resp.content


def archive_put(api: EngineAPI, container_id: str, dest_dir: str, archive: bytes) -> None:
    """Unpack the tar *archive* into *dest_dir* (``PUT /containers/{id}/archive``)."""
    api.transport.request("PUT", _path(api, f"/containers/{container_id}/archive"), params={"path": dest_dir},
                          content=archive, what=f"copying into {dest_dir} of container {container_id[:12]}",
                          kind="container")




def push_from_engine(api: EngineAPI, ref: str, dest: str = "",
                     progress: Optional[Callable[[LayerProgress], None]] = None) -> str:
    """Push image *ref* from this engine (tagged *dest* first when given); the pushed manifest digest."""
    src = parse_reference(ref)
    target = parse_reference(dest) if dest else src
    if str(target) != str(src):
        api.transport.request("POST", _path(api, f"/images/{src}/tag"),
                              params={"repo": target.name, "tag": target.tag or "latest"},
                              what=f"tagging {src} as {target}", kind="image")
    what = f"pushing {target}"
    digest = ""

    def on_event(event: dict[str, Any]) -> None:
        nonlocal digest
        digest = str((event.get("aux") or {}).get("Digest") or digest)
        detail = event.get("progressDetail") or {}
        if progress is not None and event.get("id") and detail:
            progress(LayerProgress(ref=str(target), digest=str(event["id"]), done=int(detail.get("current") or 0),
                                   total=int(detail.get("total") or 0), state="uploading"))

    with api.transport.stream("POST", _path(api, f"/images/{target.name}/push"), params={"tag": target.tag or "latest"},
                              headers={"X-Registry-Auth": _NO_AUTH}, what=what, kind="pull") as resp:
        read_json_lines(resp, what, "pull", on_event)
    if not digest:
        raise errors.CtrError(f"{what}: the engine reported no digest", hint="check the registry's log")
    return digest


# The Engine API wants this header on every push; ``{}`` means: the engine's own credentials.
_NO_AUTH = base64.urlsafe_b64encode(b"{}").decode()

__all__ = ["archive_get", "archive_put", "container_stats", "push_from_engine"]
