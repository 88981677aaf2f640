"""The dashboard's data: one row per container, read from the service, and its static rendering.

Kept apart from the widgets so the same rows render as an HTML table (nbconvert), as text (a
terminal IPython) and as widgets (JupyterLab, Notebook 7).
"""

from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from ...errors import CtrError, NotFound
from ...monitoring import StatsSample, cpu_percent

#: Status -> colour of its badge (stock Jupyter palette names would need CSS; plain colours do not).
STATUS_COLOURS = {
    "running": "#2e7d32",
    "paused": "#f9a825",
    "created": "#1565c0",
    "stopped": "#757575",
    "unknown": "#6d4c41",
}
STATUSES = ("running", "created", "paused", "stopped")


@dataclass
class RowState:
    """What the dashboard shows for one container."""

    id: str
    image: str = ""
    status: str = "created"
    pid: int = 0
    exit_code: Optional[int] = None
    ip: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    started_at: Optional[float] = None  # epoch seconds of the task's start, where known
    cpu: Optional[float] = None  # % of one core
    memory: Optional[int] = None
    memory_limit: Optional[int] = None
    last_sample: Optional[StatsSample] = None

    def uptime(self, now: Optional[float] = None) -> str:
        if self.status not in ("running", "paused") or self.started_at is None:
            return ""
        return format_duration((now or time.time()) - self.started_at)

    def matches(self, label: str, status: str) -> bool:
        """The filters: *label* is ``key`` or ``key=value`` (empty: any), *status* one of STATUSES or empty."""
        if status and self.status != status:
            return False
        if not label:
            return True
        key, sep, value = label.partition("=")
        if key.strip() not in self.labels:
            return False
        return not sep or self.labels[key.strip()] == value.strip()

    def with_sample(self, sample: StatsSample) -> RowState:
        cpu = cpu_percent(self.last_sample, sample) if self.last_sample is not None else None
        return replace(self, cpu=cpu, memory=sample.memory_usage, memory_limit=sample.memory_limit,
                       last_sample=sample)


def format_duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def process_started_at(pid: int) -> Optional[float]:
    """When host process *pid* started (epoch seconds), from /proc; None where it cannot be read."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as stat:
            boot = next(int(line.split()[1]) for line in stat if line.startswith("btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def read_row(service: Any, container_id: str, previous: Optional[RowState] = None) -> Optional[RowState]:
    """The current row of *container_id*; None when the container is gone."""
    try:
        info = service.get_container(container_id)
    except NotFound:
        return None
    row = RowState(id=info.id, image=info.image, labels=dict(info.labels), ip=getattr(info, "ip", "") or "")
    try:
        task = service.get_task_info(container_id)
    except NotFound:
        task = None
    except CtrError:
        task = None
    if task is not None:
        row.status = str(task.status)
        row.pid = task.pid
        row.exit_code = task.exit_code if row.status == "stopped" else None
        if previous is not None and previous.pid == task.pid and previous.started_at is not None:
            row.started_at = previous.started_at
        else:
            row.started_at = process_started_at(task.pid)
    if previous is not None and row.status == "running" and previous.pid == row.pid:
        row.cpu, row.memory, row.memory_limit = previous.cpu, previous.memory, previous.memory_limit
        row.last_sample = previous.last_sample
    return row


def _size(value: Optional[int]) -> str:
    from ..frames import human_size

    return "" if value is None else human_size(value)


def cells(row: RowState) -> dict[str, str]:
    """The row's values as the table shows them."""
    status = row.status + (f" ({row.exit_code})" if row.exit_code is not None else "")
    memory = _size(row.memory) + (f" / {_size(row.memory_limit)}" if row.memory is not None and row.memory_limit
                                  else "")
    return {
        "id": row.id,
        "image": row.image,
        "status": status,
        "pid": str(row.pid or ""),
        "uptime": row.uptime(),
        "ip": row.ip,
        "cpu %": "" if row.cpu is None else f"{row.cpu:.1f}",
        "memory": memory,
    }


COLUMNS = ("id", "image", "status", "pid", "uptime", "ip", "cpu %", "memory")


def html_table(rows: list[RowState], title: str = "containers") -> str:
    """A self-contained HTML table (nbconvert, the saved notebook)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = []
    for row in rows:
        values = cells(row)
        tds = []
        for column in COLUMNS:
            text = html.escape(values[column])
            if column == "status":
                colour = STATUS_COLOURS.get(row.status, STATUS_COLOURS["unknown"])
                text = f'<span style="color:{colour};font-weight:bold">{text}</span>'
            tds.append(f"<td>{text}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    empty = f'<tr><td colspan="{len(COLUMNS)}">no containers</td></tr>' if not rows else ""
    return (f'<table class="ctr-dashboard-static"><caption>{html.escape(title)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}{empty}</tbody></table>")


def text_table(rows: list[RowState], title: str = "containers") -> str:
    """The same table as aligned text (terminal IPython)."""
    table = [list(COLUMNS)] + [[cells(r)[c] for c in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=False)).rstrip() for line in table]
    return "\n".join([f"{title}: {len(rows)}", *lines])


__all__ = ["COLUMNS", "STATUSES", "STATUS_COLOURS", "RowState", "cells", "format_duration", "html_table",
           "process_started_at", "read_row", "text_table"]
