"""Swarm listings as DataFrames: tasks with their node (``%ctr ps`` on a swarm) and nodes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from ..swarm.tasks import TASK_STATES
from .frames import CtrFrame, _frame, _ts

_TASK_STATE = pd.CategoricalDtype(list(TASK_STATES), ordered=True)
_DESIRED = pd.CategoricalDtype(["running", "ready", "accepted", "shutdown", "remove"], ordered=False)


def swarm_tasks_frame(tasks: Iterable[Any]) -> CtrFrame:
    """One row per task: service, task (``service.slot``), node, state, desired state, error, ..."""
    rows = [
        {"service": t.service, "task": t.name, "node": t.node, "state": t.state,
         "desired_state": t.desired_state if t.desired_state in _DESIRED.categories else None,
         "error": t.error, "image": t.image, "id": t.id, "container": t.container_id[:12],
         "exit_code": t.exit_code, "updated": _ts(t.updated)}
        for t in tasks
    ]  # fmt: skip
    dtypes = {"service": "string", "task": "string", "node": "string", "state": _TASK_STATE,
              "desired_state": _DESIRED, "error": "string", "image": "string", "id": "string",
              "container": "string", "exit_code": "Int64", "updated": "utc"}  # fmt: skip
    return _frame(rows, dtypes)


def nodes_frame(nodes: Iterable[Any]) -> CtrFrame:
    """One row per node: name, role, availability, state, address, CPUs, memory, labels, engine."""
    rows = [
        {"name": n.name, "role": n.role, "availability": n.availability, "state": n.state,
         "manager_status": n.manager_status, "address": n.address, "cpus": n.cpus, "memory": n.memory or None,
         "engine_version": n.engine_version, "labels": dict(n.labels), "id": n.id}
        for n in nodes
    ]  # fmt: skip
    dtypes = {"name": "string", "role": "category", "availability": "category", "state": "category",
              "manager_status": "string", "address": "string", "cpus": "float64", "memory": "Int64",
              "engine_version": "string", "labels": object, "id": "string"}  # fmt: skip
    return _frame(rows, dtypes, sizes=["memory"])


__all__ = ["nodes_frame", "swarm_tasks_frame"]
