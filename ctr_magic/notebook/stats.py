"""``%ctr stats``: resource use of running containers as a DataFrame, CPU % from two samples."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Optional

from .. import features
from ..errors import CtrError
from ..monitoring import StatsSample, cpu_percent
from ..types import TaskStatus
from .frames import SIZE_COLUMNS_ATTR, CtrFrame

#: Column -> dtype of the stats frame; the byte columns print as sizes.
STATS_COLUMNS: dict[str, str] = {
    "id": "string", "cpu_percent": "Float64", "memory_usage": "Int64", "memory_limit": "Int64",
    "memory_percent": "Float64", "memory_rss": "Int64", "pids": "Int64", "block_read": "Int64",
    "block_write": "Int64", "net_rx": "Int64", "net_tx": "Int64",
}  # fmt: skip
SIZE_COLUMNS = ("memory_usage", "memory_limit", "memory_rss", "block_read", "block_write", "net_rx", "net_tx")
DEFAULT_INTERVAL = 0.5


def running_ids(service: Any) -> list[str]:
    """Ids of the containers whose task runs now."""
    return sorted(t.container_id for t in service.list_tasks() if t.status == TaskStatus.RUNNING)


def sample_all(service: Any, ids: Iterable[str]) -> dict[str, StatsSample]:
    stats = features.require(service, features.Stats, "%ctr stats")
    return {cid: stats.container_stats(cid) for cid in ids}


def row(first: Optional[StatsSample], second: StatsSample) -> dict[str, Any]:
    """One frame row from two samples of a container (CPU % needs both)."""
    limit = second.memory_limit
    return {
        "id": second.container_id,
        "cpu_percent": cpu_percent(first, second) if first is not None else None,
        "memory_usage": second.memory_usage,
        "memory_limit": limit,
        "memory_percent": second.memory_usage / limit * 100.0 if limit else None,
        "memory_rss": second.memory_rss,
        "pids": second.pids,
        "block_read": second.block_read,
        "block_write": second.block_write,
        "net_rx": second.net_rx,
        "net_tx": second.net_tx,
    }


def stats_frame(rows: list[dict[str, Any]]) -> CtrFrame:
    df = CtrFrame({c: [r.get(c) for r in rows] for c in STATS_COLUMNS}, columns=list(STATS_COLUMNS))
    for column, dtype in STATS_COLUMNS.items():
        df[column] = df[column].astype(dtype)
    df.attrs[SIZE_COLUMNS_ATTR] = list(SIZE_COLUMNS)
    return df


def measure(service: Any, ids: Iterable[str] = (), interval: float = DEFAULT_INTERVAL) -> CtrFrame:
    """Sample every container twice, *interval* seconds apart; one row each. No ids: all running ones.

    A container named explicitly that is not running fails with its one-line error; one that
    stops between the two samples is left out.
    """
    wanted = list(ids) or running_ids(service)
    first = sample_all(service, wanted)
    if not first:
        return stats_frame([])
    time.sleep(interval)  # the measuring window of CPU %, not a synchronisation
    rows = []
    for cid, sample in first.items():
        try:
            second = features.require(service, features.Stats).container_stats(cid)
        except CtrError:
            continue
        rows.append(row(sample, second))
    return stats_frame(rows)


__all__ = ["STATS_COLUMNS", "measure", "row", "running_ids", "stats_frame"]
