"""Listings as DataFrames: dtypes, human-readable sizes that stay integers, the ps join."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from ctr_magic.notebook.frames import (
    NO_TASK,
    SIZE_COLUMNS_ATTR,
    CtrFrame,
    containers_frame,
    human_size,
    images_frame,
    snapshots_frame,
    tasks_frame,
)
from ctr_magic.types import ContainerInfo, ImageInfo, SnapshotInfo, TaskInfo, TaskStatus

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
DIGEST = "sha256:" + "ab" * 32


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 1234567, 5 * 10**9)] == ["0 B", "999 B", "1.0 kB", "1.2 MB",
                                                                          "5.0 GB"]  # fmt: skip
    assert human_size(None) == "" and human_size(pd.NA) == ""


def test_images_frame_dtypes_and_display() -> None:
    df = images_frame([
        ImageInfo("reg/b:1", DIGEST, size=1234567, created=T0, platforms=["linux/amd64", "linux/arm64"]),
        ImageInfo("reg/a:1", DIGEST, size=0, labels={"k": "v"}),
    ])  # fmt: skip
    assert isinstance(df, CtrFrame)
    assert list(df.columns) == ["name", "digest", "size", "created", "platforms", "labels"]
    assert list(df["name"]) == ["reg/a:1", "reg/b:1"]  # sorted
    assert str(df["size"].dtype) == "Int64"
    assert df["size"].iloc[1] == 1234567 and df["size"].isna().iloc[0]
    assert isinstance(df["created"].dtype, pd.DatetimeTZDtype) and str(df["created"].dt.tz) == "UTC"
    assert df["created"].iloc[1] == pd.Timestamp("2024-05-01T10:00:00Z")
    assert df["platforms"].iloc[1] == "linux/amd64, linux/arm64" and df["labels"].iloc[0] == {"k": "v"}
    # values stay integers, the display is human-readable, in text and HTML
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        assert "1.2 MB" in repr(df) and "1234567" not in repr(df)
    assert "1.2 MB" in df._repr_html_()
    assert df["size"].sum() == 1234567


def test_size_display_survives_filtering_and_selection() -> None:
    df = images_frame([ImageInfo("a", DIGEST, size=2000), ImageInfo("b", DIGEST, size=3_000_000)])
    big = df[df["size"] > 10_000]
    assert isinstance(big, CtrFrame) and big.attrs[SIZE_COLUMNS_ATTR] == ["size"]
    assert "3.0 MB" in repr(big[["name", "size"]])
    without = df[["name"]]
    assert repr(without) == repr(pd.DataFrame(without))


def test_empty_listing_keeps_columns_and_dtypes() -> None:
    df = images_frame([])
    assert len(df) == 0 and str(df["size"].dtype) == "Int64"
    assert isinstance(df["created"].dtype, pd.DatetimeTZDtype)


def test_ps_joins_tasks_and_uses_a_status_category() -> None:
    containers = [ContainerInfo("web", image="reg/busybox:1", created_at=T0, ip="10.88.0.2"), ContainerInfo("idle"),
                  ContainerInfo("done")]  # fmt: skip
    tasks = [TaskInfo("web", pid=42, status=TaskStatus.RUNNING), TaskInfo("done", status=TaskStatus.STOPPED,
                                                                           exit_code=3)]  # fmt: skip
    df = containers_frame(containers, tasks)
    assert list(df["id"]) == ["done", "idle", "web"]
    assert isinstance(df["status"].dtype, pd.CategoricalDtype)
    assert list(df["status"]) == ["stopped", NO_TASK, "running"]
    assert set(df["status"].cat.categories) >= {"running", "stopped", "created", "paused", "unknown", NO_TASK}
    assert str(df["pid"].dtype) == "Int64" and df["pid"].iloc[2] == 42 and df["pid"].isna().iloc[0]
    assert df["exit_code"].iloc[0] == 3 and df["exit_code"].isna().iloc[2]
    assert df["ip"].iloc[2] == "10.88.0.2"
    assert (df["status"] == "running").sum() == 1


def test_tasks_and_snapshots_frames() -> None:
    t = tasks_frame([TaskInfo("b", pid=7, status=TaskStatus.PAUSED), TaskInfo("a", status=TaskStatus.CREATED)])
    assert list(t["container"]) == ["a", "b"] and list(t["status"]) == ["created", "paused"]
    s = snapshots_frame([
        SnapshotInfo("sha256:x", kind="committed", size=4096, inodes=3, created=T0, updated=T0),
        SnapshotInfo("box", parent="sha256:x", kind="active", size=12),
        SnapshotInfo("odd", kind="weird"),
    ])  # fmt: skip
    assert list(s["kind"]) == ["active", "unknown", "committed"]
    assert str(s["size"].dtype) == "Int64" and s["size"].iloc[2] == 4096
    assert "4.1 kB" in repr(s[["name", "size"]])


@pytest.mark.parametrize("frame", [images_frame, tasks_frame, containers_frame, snapshots_frame])
def test_frames_are_plain_dataframes_for_pandas(frame: object) -> None:
    df = frame([])  # type: ignore[operator]
    assert isinstance(df, pd.DataFrame)
    assert isinstance(df.to_display(), pd.DataFrame)
