"""Swarm tasks as the manager reports them: one row per task, with the node it was placed on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from ..docker.convert import parse_time
from ..types import TaskStatus

#: Swarm's task states in the order a task goes through them (the DataFrame's categories).
TASK_STATES = ("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting",
               "running", "complete", "shutdown", "failed", "rejected", "remove", "orphaned")
_BEFORE_RUNNING = frozenset(TASK_STATES[: TASK_STATES.index("running")])
_STATUS = {"running": TaskStatus.RUNNING, "complete": TaskStatus.STOPPED, "shutdown": TaskStatus.STOPPED,
           "failed": TaskStatus.STOPPED, "rejected": TaskStatus.STOPPED, "orphaned": TaskStatus.UNKNOWN,
           "remove": TaskStatus.STOPPED}


@dataclass(frozen=True)
class ServiceTask:
    id: str
    name: str  # service.slot, as `docker service ps` shows it
    service: str
    service_id: str
    slot: int
    node: str  # the node's host name ("" while unassigned)
    node_id: str
    state: str
    desired_state: str
    error: str
    message: str
    image: str
    container_id: str
    exit_code: Optional[int]
    spec_version: int
    created: Optional[datetime]
    updated: Optional[datetime]

    @property
    def status(self) -> TaskStatus:
        """The contract's view of the task."""
        if self.state in _BEFORE_RUNNING:
            return TaskStatus.CREATED
        return _STATUS.get(self.state, TaskStatus.UNKNOWN)

    @property
    def live(self) -> bool:
        return self.desired_state == "running" and self.state == "running"


def task_from_json(data: dict[str, Any], services: dict[str, str], nodes: dict[str, str]) -> ServiceTask:
    status = data.get("Status") or {}
    container = status.get("ContainerStatus") or {}
    service_id = str(data.get("ServiceID", ""))
    service = services.get(service_id, service_id[:12])
    slot = int(data.get("Slot") or 0)
    node_id = str(data.get("NodeID", ""))
    exit_code = container.get("ExitCode")
    spec = ((data.get("Spec") or {}).get("ContainerSpec") or {})
    return ServiceTask(
        id=str(data.get("ID", "")),
        name=f"{service}.{slot}" if slot else f"{service}.{node_id[:12]}",
        service=service,
        service_id=service_id,
        slot=slot,
        node=nodes.get(node_id, node_id[:12]),
        node_id=node_id,
        state=str(status.get("State", "")),
        desired_state=str(data.get("DesiredState", "")),
        error=str(status.get("Err", "")),
        message=str(status.get("Message", "")),
        image=str(spec.get("Image", "")),
        container_id=str(container.get("ContainerID", "")),
        exit_code=int(exit_code) if exit_code is not None and status.get("State") != "running" else None,
        spec_version=int(((data.get("Version") or {}).get("Index")) or 0),
        created=parse_time(data.get("CreatedAt")),
        updated=parse_time(status.get("Timestamp") or data.get("UpdatedAt")),
    )


def sort_key(task: ServiceTask) -> tuple[str, int, int, float]:
    """Service, slot, current before history, newest first (as `docker service ps` lists them)."""
    return (task.service, task.slot, 0 if task.desired_state == "running" else 1,
            -task.updated.timestamp() if task.updated is not None else 0.0)


__all__ = ["TASK_STATES", "ServiceTask", "sort_key", "task_from_json"]
