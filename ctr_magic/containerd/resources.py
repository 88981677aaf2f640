"""Resource limits in the OCI spec (``linux.resources``, rlimits, /dev/shm, read-only root) and in use.

Pure functions build the spec parts; :class:`ResourceControl` changes a running task's limits
(``Tasks.Update``) and reads what the cgroup recorded (OOM kills), for the service to delegate to.

cgroup v1 and v2: the v1 fields (``memory.limit``, ``cpu.quota``...) are what runc reads on both
(it converts them on a v2 host). ``linux.resources.unified`` holds the v2 names; runc refuses a
spec with ``unified`` on a v1 host, so it is written only where ``/sys/fs/cgroup`` is v2.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from typing import TYPE_CHECKING, Any, Optional

from google.protobuf import any_pb2, field_mask_pb2

from .. import errors
from ..constants import SPEC_TYPE_URL
from ..limits import CPU_PERIOD, ResourceLimits
from .pb import containers_pb2, tasks_pb2

if TYPE_CHECKING:
    from .runtime_base import Runtime

log = logging.getLogger(__name__)

LINUX_RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
CGROUP_ROOT = "/sys/fs/cgroup"
#: Where limit-aware programs look for their limits; added to the spec of a container with limits.
CGROUP_MOUNT = {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}


def cgroup_v2(root: str = CGROUP_ROOT) -> bool:
    """True on a unified (v2-only) hierarchy."""
    return os.path.exists(os.path.join(root, "cgroup.controllers"))


def linux_resources(limits: ResourceLimits, *, v2: Optional[bool] = None) -> dict[str, Any]:
    """The OCI ``LinuxResources`` for *limits* (only what is set)."""
    v2 = cgroup_v2() if v2 is None else v2
    out: dict[str, Any] = {}
    unified: dict[str, str] = {}
    if limits.memory:
        out["memory"] = {"limit": limits.memory, "swap": limits.swap_total()}
        unified["memory.max"] = str(limits.memory)
        swap = limits.swap_total()
        unified["memory.swap.max"] = "max" if swap == -1 else str(max(swap - limits.memory, 0))
    if limits.cpus or limits.cpu_shares:
        cpu: dict[str, Any] = {}
        if limits.cpus:
            cpu.update(quota=int(limits.cpus * CPU_PERIOD), period=CPU_PERIOD)
            unified["cpu.max"] = f"{cpu['quota']} {CPU_PERIOD}"
        if limits.cpu_shares:
            cpu["shares"] = limits.cpu_shares
            unified["cpu.weight"] = str(shares_to_weight(limits.cpu_shares))
        out["cpu"] = cpu
    if limits.pids_limit:
        out["pids"] = {"limit": limits.pids_limit}
        unified["pids.max"] = str(limits.pids_limit)
    if v2 and unified:
        out["unified"] = unified
    return out


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares (2..262144) -> v2 cpu.weight (1..10000), the formula runc uses."""
    return 1 + ((max(2, min(shares, 262144)) - 2) * 9999) // 262142


def apply_limits(spec: dict[str, Any], limits: ResourceLimits, *, v2: Optional[bool] = None) -> None:
    """Write *limits* into a container's OCI spec (after the image config and ContainerSpec)."""
    if limits.is_empty():
        return
    limits.check()
    resources = spec.setdefault("linux", {}).setdefault("resources", {})
    resources.update(linux_resources(limits, v2=v2))
    if limits.has_cgroup_limits() and not any(m["destination"] == "/sys/fs/cgroup" for m in spec["mounts"]):
        spec["mounts"].append(dict(CGROUP_MOUNT, options=list(CGROUP_MOUNT["options"])))
    if limits.shm_size:
        for mount in spec.get("mounts", []):
            if mount["destination"] == "/dev/shm":
                options = [o for o in mount.get("options", []) if not o.startswith("size=")]
                mount["options"] = [*options, f"size={max(limits.shm_size // 1024, 1)}k"]
    if limits.ulimits:
        process = spec["process"]
        kept = [r for r in process.get("rlimits", []) if r["type"] not in {u.oci_type for u in limits.ulimits}]
        process["rlimits"] = kept + [{"type": u.oci_type, "soft": _rlimit(u.soft), "hard": _rlimit(u.hard)}
                                     for u in limits.ulimits]
    if limits.read_only:
        spec.setdefault("root", {})["readonly"] = True


def _rlimit(value: int) -> int:
    return 2**64 - 1 if value == -1 else value  # RLIM_INFINITY


def memory_limit_of(spec: dict[str, Any]) -> int:
    return int(((spec.get("linux") or {}).get("resources") or {}).get("memory", {}).get("limit") or 0)


def _cgroup_file(cgroups_path: str, controller: str, name: str, root: str = CGROUP_ROOT) -> str:
    relative = cgroups_path.lstrip("/")
    if cgroup_v2(root):
        return posixpath.join(root, relative, name)
    return posixpath.join(root, controller, relative, name)


def oom_kills(cgroups_path: str, root: str = CGROUP_ROOT) -> Optional[int]:
    """How many processes the kernel's OOM killer took in the cgroup (None: cgroup gone or unknown)."""
    v2 = cgroup_v2(root)
    path = _cgroup_file(cgroups_path, "memory", "memory.events" if v2 else "memory.oom_control", root)
    try:
        with open(path) as fh:
            fields = dict(line.split() for line in fh if len(line.split()) == 2)
    except OSError:
        return None
    value = fields.get("oom_kill")
    return int(value) if value is not None else None


class ResourceControl:
    """Limits of running tasks: Update, and the OOM record of their cgroups (on the shared Runtime)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def update(self, container_id: str, limits: ResourceLimits) -> None:
        """New cgroup limits for the running task, kept in the container's spec for its next start."""
        if limits.shm_size or limits.ulimits or limits.read_only:
            raise errors.InvalidArgument("update changes memory, CPU and pids limits only",
                                         hint="--shm-size, --ulimit and --read-only apply at create")
        if not limits.has_cgroup_limits():
            raise errors.InvalidArgument("nothing to update", hint="give --memory, --cpus, --cpu-shares or "
                                                                     "--pids-limit")
        limits.check()
        runtime = self._runtime
        spec = runtime.container_spec(container_id)
        resources = linux_resources(limits)
        request = tasks_pb2.UpdateTaskRequest(
            container_id=container_id,
            resources=any_pb2.Any(type_url=LINUX_RESOURCES_TYPE_URL, value=json.dumps(resources).encode()))
        runtime.client.call(runtime.tasks_stub.Update, request, what=f"updating the limits of {container_id}")
        merged = dict((spec.get("linux") or {}).get("resources") or {})
        for key, value in resources.items():
            merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
        self._store_spec(container_id, {**spec, "linux": {**spec.get("linux", {}), "resources": merged}})

    def _store_spec(self, container_id: str, spec: dict[str, Any]) -> None:
        runtime = self._runtime
        container = containers_pb2.Container(id=container_id, spec=any_pb2.Any(type_url=SPEC_TYPE_URL,
                                                                               value=json.dumps(spec).encode()))
        request = containers_pb2.UpdateContainerRequest(container=container,
                                                        update_mask=field_mask_pb2.FieldMask(paths=["spec"]))
        runtime.client.call(runtime.containers_stub.Update, request, what=f"storing the limits of {container_id}")
        runtime.forget_spec(container_id)

    def oom_killed(self, container_id: str) -> bool:
        """True when the kernel OOM-killed a process of the container's task (read before the task is deleted)."""
        spec = self._runtime.container_spec(container_id)
        path = (spec.get("linux") or {}).get("cgroupsPath") or ""
        kills = oom_kills(path) if path else None
        return bool(kills)

    def memory_limit(self, container_id: str) -> int:
        return memory_limit_of(self._runtime.container_spec(container_id))
