"""Contract dataclasses -> pandas DataFrames with real dtypes.

Timestamps are tz-aware (UTC), sizes are nullable integers (``Int64``) that *display*
human-readably (``12.3 MB``) while the values stay byte counts, and states are categoricals.
Import this module lazily: it imports pandas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Optional

import pandas as pd

from ..types import ContainerInfo, ImageInfo, SnapshotInfo, TaskInfo, TaskStatus

#: ``DataFrame.attrs`` key listing the columns shown as human-readable sizes.
SIZE_COLUMNS_ATTR = "ctr_magic.size_columns"

#: Status of a container that has no task at all.
NO_TASK = "none"
TASK_STATES = [NO_TASK] + [str(s) for s in TaskStatus]
SNAPSHOT_KINDS = ["active", "committed", "view", "unknown"]

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(value: Any) -> str:
    """Decimal units as ``docker images`` prints them: ``999 B``, ``1.2 kB``, ``34.5 MB``."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    size = float(value)
    for unit in _UNITS:
        if abs(size) < 1000 or unit == _UNITS[-1]:
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} {_UNITS[-1]}"  # pragma: no cover


class CtrFrame(pd.DataFrame):
    """A DataFrame whose size columns print as ``12.3 MB``; the data itself are integers."""

    @property
    def _constructor(self) -> type[CtrFrame]:
        return CtrFrame

    def _size_columns(self) -> list[Any]:
        return [c for c in self.attrs.get(SIZE_COLUMNS_ATTR, ()) if c in self.columns]

    def to_display(self) -> pd.DataFrame:
        """A plain DataFrame with the size columns formatted (what the notebook shows)."""
        plain = pd.DataFrame(self, copy=True)
        plain.attrs = {}
        for column in self._size_columns():
            plain[column] = plain[column].map(human_size, na_action="ignore").astype("string")
        return plain

    def __repr__(self) -> str:
        return repr(self.to_display())

    def _repr_html_(self) -> Optional[str]:
        return self.to_display()._repr_html_()


def _frame(rows: Sequence[Mapping[str, Any]], dtypes: Mapping[str, Any], sizes: Sequence[str] = ()) -> CtrFrame:
    columns = list(dtypes)
    df = CtrFrame({c: [row.get(c) for row in rows] for c in columns}, columns=columns)
    for column, dtype in dtypes.items():
        if dtype == "utc":
            df[column] = pd.to_datetime(df[column], utc=True)
        elif isinstance(dtype, pd.CategoricalDtype):
            df[column] = pd.Categorical(df[column], dtype=dtype)
        elif dtype is not object:
            df[column] = df[column].astype(dtype)
    df.attrs[SIZE_COLUMNS_ATTR] = [s for s in sizes if s in df.columns]
    return df


def _ts(value: Optional[datetime]) -> Any:
    return value if value is not None else pd.NaT


_STATUS = pd.CategoricalDtype(TASK_STATES, ordered=False)
_KIND = pd.CategoricalDtype(SNAPSHOT_KINDS, ordered=False)


def images_frame(images: Iterable[ImageInfo]) -> CtrFrame:
    """``%ctr images``: name, digest, size (bytes), created (UTC), platforms, labels."""
    rows = [
        {
            "name": i.name,
            "digest": i.id,
            "size": i.size if i.size else None,
            "created": _ts(i.created),
            "platforms": ", ".join(i.platforms),
            "labels": dict(i.labels),
        }
        for i in sorted(images, key=lambda i: i.name)
    ]
    dtypes = {"name": "string", "digest": "string", "size": "Int64", "created": "utc", "platforms": "string",
              "labels": object}  # fmt: skip
    return _frame(rows, dtypes, sizes=["size"])


def tasks_frame(tasks: Iterable[TaskInfo]) -> CtrFrame:
    """``%ctr tasks``: container, pid, status (category), exit code."""
    rows = [
        {"container": t.container_id, "pid": t.pid or None, "status": str(t.status),
         "exit_code": t.exit_code if t.status == TaskStatus.STOPPED else None}
        for t in sorted(tasks, key=lambda t: t.container_id)
    ]  # fmt: skip
    return _frame(rows, {"container": "string", "pid": "Int64", "status": _STATUS, "exit_code": "Int64"})


#: Label prefixes that runtimes and ctr-magic set for themselves, not the user.
INTERNAL_LABEL_PREFIXES = ("io.containerd.", "containerd.io/", "io.ctr-magic", "nerdctl/", "com.docker.",
                           "org.opencontainers.")


def user_labels(labels: dict[str, str]) -> dict[str, str]:
    """The labels a person set: everything but the runtimes' and ctr-magic's own bookkeeping."""
    return {k: v for k, v in labels.items() if not k.startswith(INTERNAL_LABEL_PREFIXES)}


def containers_frame(containers: Iterable[ContainerInfo], tasks: Iterable[TaskInfo] = (), *,
                     all_labels: bool = False) -> CtrFrame:
    """``%ctr ps``: containers joined with their task (status ``none`` when there is no task).

    ``labels`` holds the user's labels only, unless *all_labels* (``%ctr ps --labels``).
    """
    by_id = {t.container_id: t for t in tasks}
    rows = []
    for c in sorted(containers, key=lambda c: c.id):
        task = by_id.get(c.id)
        rows.append(
            {
                "id": c.id,
                "image": c.image,
                "status": str(task.status) if task is not None else NO_TASK,
                "pid": (task.pid or None) if task is not None else None,
                "exit_code": task.exit_code if task is not None and task.status == TaskStatus.STOPPED else None,
                "ip": c.ip,
                "created": _ts(c.created_at),
                "labels": dict(c.labels) if all_labels else user_labels(c.labels),
            }
        )
    dtypes = {"id": "string", "image": "string", "status": _STATUS, "pid": "Int64", "exit_code": "Int64",
              "ip": "string", "created": "utc", "labels": object}  # fmt: skip
    return _frame(rows, dtypes)


def snapshots_frame(snapshots: Iterable[SnapshotInfo]) -> CtrFrame:
    """``%ctr snapshots``: name, parent, kind (category), size and inodes, created/updated (UTC), labels."""
    rows = [
        {
            "name": s.name,
            "parent": s.parent,
            "kind": s.kind if s.kind in SNAPSHOT_KINDS else "unknown",
            "size": s.size,
            "inodes": s.inodes,
            "created": _ts(s.created),
            "updated": _ts(s.updated),
            "labels": dict(s.labels),
        }
        for s in sorted(snapshots, key=lambda s: s.name)
    ]
    dtypes = {"name": "string", "parent": "string", "kind": _KIND, "size": "Int64", "inodes": "Int64",
              "created": "utc", "updated": "utc", "labels": object}  # fmt: skip
    return _frame(rows, dtypes, sizes=["size"])


__all__ = [
    "NO_TASK",
    "SIZE_COLUMNS_ATTR",
    "CtrFrame",
    "containers_frame",
    "human_size",
    "images_frame",
    "snapshots_frame",
    "tasks_frame",
    "user_labels",
]
