"""A service request (what ``%ctr run --replicas`` asks for) and the ServiceSpec the manager takes.

Everything is validated here, before any call to the manager, so bad input leaves nothing behind:
names, replica counts, constraint syntax, sizes and CPU counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from .. import errors
from ..types import MountSpec

#: Service label: the replicas a service created through the contract (create_container) starts with.
REPLICAS_LABEL = "ctr-magic.replicas"
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
_CONSTRAINT = re.compile(r"\s*(node\.[A-Za-z0-9_.\-]+|engine\.labels\.[A-Za-z0-9_.\-]+)\s*(==|!=)\s*(\S.*?)\s*\Z")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\Z", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_NANOS = 1_000_000_000


@dataclass(frozen=True)
class Constraint:
    """``node.labels.zone==a`` as (field, operator, value)."""

    field: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value}"


def parse_constraint(text: str) -> Constraint:
    match = _CONSTRAINT.match(text or "")
    if not match:
        raise errors.InvalidArgument(
            f"placement constraint {text!r} is not FIELD==VALUE or FIELD!=VALUE",
            hint="e.g. node.labels.zone==a, node.role==worker, node.hostname!=node1",
        )
    return Constraint(match.group(1), match.group(2), match.group(3))


def parse_size(text: str, what: str) -> int:
    """``64m``, ``1.5g``, ``512MiB`` -> bytes."""
    match = _SIZE.match((text or "").strip())
    if not match:
        raise errors.InvalidArgument(f"{what} {text!r} is not a size", hint="e.g. 64m, 1g, 512MiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_cpus(text: str, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = -1.0
    if value <= 0:
        raise errors.InvalidArgument(f"{what} {text!r} is not a positive number of CPUs", hint="e.g. 0.5 or 2")
    return value


@dataclass(frozen=True)
class Resources:
    cpus: float = 0.0
    memory: int = 0

    def to_json(self) -> dict[str, int]:
        out = {}
        if self.cpus:
            out["NanoCPUs"] = int(self.cpus * _NANOS)
        if self.memory:
            out["MemoryBytes"] = int(self.memory)
        return out


@dataclass
class ServiceRequest:
    """A replicated service: the cluster-wide form of a container."""

    name: str
    image: str
    replicas: int = 1
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    mounts: list[MountSpec] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    constraints: list[str] = field(default_factory=list)
    reservations: Resources = field(default_factory=Resources)
    limits: Resources = field(default_factory=Resources)
    work_dir: str = ""
    user: str = ""
    hostname: str = ""
    #: restart policy: "any" (keep it running), "on-failure" or "none" (run once)
    restart: str = "any"
    #: how many tasks a rolling update replaces at once, and the pause between batches (seconds)
    update_parallelism: int = 1
    update_delay: float = 0.0
    #: seconds a task gets between SIGTERM and SIGKILL when it stops (None: Swarm's 10 s)
    stop_grace: Optional[float] = None

    def validate(self) -> list[Constraint]:
        if not self.name or not _NAME.match(self.name) or len(self.name) > 63:
            raise errors.InvalidArgument(f"service name {self.name!r} is not valid",
                                         hint="letters, digits, '_', '.', '-', at most 63 characters")
        if not self.image or not self.image.strip():
            raise errors.InvalidArgument(f"service {self.name}: image is empty", hint="give an image reference")
        if self.replicas < 0:
            raise errors.InvalidArgument(f"service {self.name}: replicas must be 0 or more, not {self.replicas}")
        if self.restart not in ("any", "on-failure", "none"):
            raise errors.InvalidArgument(f"restart policy {self.restart!r} is unknown", hint="any, on-failure or none")
        if self.update_parallelism < 0 or self.update_delay < 0 or (self.stop_grace or 0) < 0:
            raise errors.InvalidArgument("update parallelism, delay and stop grace must not be negative")
        for limit, reserve, what in ((self.limits.cpus, self.reservations.cpus, "CPUs"),
                                     (self.limits.memory, self.reservations.memory, "memory")):
            if limit and reserve and reserve > limit:
                raise errors.InvalidArgument(f"service {self.name}: the {what} reservation exceeds the limit")
        return [parse_constraint(c) for c in self.constraints]

    def to_spec(self, image: str) -> dict[str, Any]:
        """The ServiceSpec body of ``POST /services/create`` (image: the ref to run, pinned)."""
        from ..docker.requests import mount_body as _mount  # the same Mount objects as a container's

        container: dict[str, Any] = {"Image": image}
        if self.cmd:
            container["Command"] = list(self.cmd)
        if self.env:
            container["Env"] = list(self.env)
        if self.mounts:
            container["Mounts"] = [_mount(m) for m in self.mounts]
        for key, value in (("Dir", self.work_dir), ("User", self.user), ("Hostname", self.hostname)):
            if value:
                container[key] = value
        if self.stop_grace is not None:
            container["StopGracePeriod"] = int(self.stop_grace * _NANOS)
        resources: dict[str, Any] = {}
        if self.limits.to_json():
            resources["Limits"] = self.limits.to_json()
        if self.reservations.to_json():
            resources["Reservations"] = self.reservations.to_json()
        template: dict[str, Any] = {
            "ContainerSpec": container,
            "RestartPolicy": {"Condition": self.restart, "Delay": _NANOS},
            "Placement": {"Constraints": [str(parse_constraint(c)) for c in self.constraints]},
        }
        if resources:
            template["Resources"] = resources
        return {
            "Name": self.name,
            "Labels": dict(self.labels),
            "TaskTemplate": template,
            "Mode": {"Replicated": {"Replicas": int(self.replicas)}},
            "UpdateConfig": {"Parallelism": int(self.update_parallelism), "Delay": int(self.update_delay * _NANOS),
                             "FailureAction": "pause", "Order": "stop-first", "Monitor": 2 * _NANOS},
        }


def node_matches(constraint: Constraint, node: Any) -> bool:
    """Whether *node* (a SwarmNode) satisfies *constraint*, as the manager's scheduler decides.

    Fields this module does not model (``node.platform.arch``...) count as satisfied: the
    manager has the last word on those.
    """
    if not constraint.field.startswith(_MODELLED):
        return True
    value = _node_field(constraint.field, node)
    equal = value is not None and value.lower() == constraint.value.lower()
    return equal if constraint.op == "==" else not equal


_MODELLED = ("node.id", "node.hostname", "node.role", "node.labels.", "engine.labels.")


def _node_field(name: str, node: Any) -> Optional[str]:
    if name == "node.id":
        return str(node.id)
    if name == "node.hostname":
        return str(node.name)
    if name == "node.role":
        return str(node.role)
    if name.startswith("node.labels."):
        return node.labels.get(name[len("node.labels."):])
    return node.engine_labels.get(name[len("engine.labels."):])


def check_placeable(req: ServiceRequest, constraints: list[Constraint], nodes: list[Any]) -> None:
    """InvalidArgument when no ready, active node satisfies the constraints and reservations."""
    candidates = [n for n in nodes if n.state == "ready" and n.availability == "active"]
    names = ", ".join(sorted(n.name for n in nodes)) or "none"
    fitting = [n for n in candidates if all(node_matches(c, n) for c in constraints)]
    if not fitting:
        shown = " and ".join(str(c) for c in constraints) or "(none)"
        raise errors.InvalidArgument(
            f"service {req.name}: no ready node satisfies the constraint {shown}",
            hint=f"nodes: {names}; see %ctr nodes for their roles and labels",
        )
    if req.reservations.memory and all(n.memory and n.memory < req.reservations.memory for n in fitting):
        raise errors.InvalidArgument(
            f"service {req.name}: no node has {req.reservations.memory >> 20} MiB of memory to reserve",
            hint="reserve less (see %ctr nodes for each node's memory)")
    if req.reservations.cpus and all(n.cpus and n.cpus < req.reservations.cpus for n in fitting):
        raise errors.InvalidArgument(
            f"service {req.name}: no node has {req.reservations.cpus:g} CPUs to reserve",
            hint="reserve less (see %ctr nodes for each node's CPUs)")


__all__ = [
    "REPLICAS_LABEL",
    "Constraint",
    "Resources",
    "ServiceRequest",
    "check_placeable",
    "node_matches",
    "parse_constraint",
    "parse_cpus",
    "parse_size",
]
