"""Calls that only a task's own node can answer: container stats and files (tar archives)."""

from __future__ import annotations

from typing import Any

from ..docker.api import EngineAPI


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


__all__ = ["archive_get", "archive_put", "container_stats"]
