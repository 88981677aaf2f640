"""Resource limits on Docker: ``HostConfig`` fields at create, ``/containers/{id}/update`` later, OOM from inspect."""

from __future__ import annotations

from typing import Any

from .. import errors
from ..limits import ResourceLimits


def cgroup_fields(limits: ResourceLimits) -> dict[str, Any]:
    """The HostConfig fields of the cgroup limits (what ``update`` may change too)."""
    out: dict[str, Any] = {}
    if limits.memory:
        out["Memory"] = limits.memory
        out["MemorySwap"] = limits.swap_total()
    if limits.cpus:
        out["NanoCpus"] = int(limits.cpus * 1e9)
    if limits.cpu_shares:
        out["CpuShares"] = limits.cpu_shares
    if limits.pids_limit:
        out["PidsLimit"] = limits.pids_limit
    return out


def host_config(limits: ResourceLimits) -> dict[str, Any]:
    """Every HostConfig field *limits* sets (merged into the create body's HostConfig)."""
    if limits.is_empty():
        return {}
    limits.check()
    out = cgroup_fields(limits)
    if limits.shm_size:
        out["ShmSize"] = limits.shm_size
    if limits.ulimits:
        out["Ulimits"] = [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in limits.ulimits]
    if limits.read_only:
        out["ReadonlyRootfs"] = True
    return out


def update_body(limits: ResourceLimits) -> dict[str, Any]:
    if limits.shm_size or limits.ulimits or limits.read_only:
        raise errors.InvalidArgument("update changes memory, CPU and pids limits only",
                                     hint="--shm-size, --ulimit and --read-only apply at create")
    if not limits.has_cgroup_limits():
        raise errors.InvalidArgument("nothing to update", hint="give --memory, --cpus, --cpu-shares or --pids-limit")
    return cgroup_fields(limits.check())


def oom_killed(inspect: dict[str, Any]) -> bool:
    return bool((inspect.get("State") or {}).get("OOMKilled"))


def memory_limit(inspect: dict[str, Any]) -> int:
    return int((inspect.get("HostConfig") or {}).get("Memory") or 0)
