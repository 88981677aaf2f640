"""``%ctr dashboard``, ``%ctr console`` and ``%ctr stats`` in a terminal IPython against the private containerd.

In a terminal there is no front end to draw widgets: the dashboard prints its table once (and runs
no thread), stats are a DataFrame, and the console says in one line what to use instead. The live
widgets are tested in Chromium (tests/browser/).
"""

from __future__ import annotations

import threading
from typing import Any

import test_magics
from test_magics import ok, one_line_failure, run

from ctr_magic.errors import InvalidArgument

shell = test_magics.shell
box = test_magics.box


def test_dashboard_in_a_terminal_prints_the_table_once(shell: Any, box: str) -> None:
    def view_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith(("ctr-dashboard", "ctr-events"))}

    before = view_threads()
    out = ok(shell, "view = %ctr dashboard\nprint(repr(view))")
    view = shell.user_ns["view"]
    assert view.closed and view.threads == []
    assert box in out and "running" in out and "containers (containerd)" in out
    assert view_threads() - before == set()
    bundle = view._repr_mimebundle_()
    assert f"<td>{box}</td>" in bundle["text/html"] and box in bundle["text/plain"]


def test_stats_magic_returns_a_dataframe(shell: Any, box: str) -> None:
    ok(shell, f"df = %ctr stats {box} --interval 0.4")
    df = shell.user_ns["df"]
    assert list(df["id"]) == [box]
    assert {"cpu_percent", "memory_usage", "memory_limit", "memory_rss", "pids", "block_read", "net_rx"} <= set(df)
    assert df["memory_usage"].iloc[0] > 0 and df["pids"].iloc[0] >= 1
    ok(shell, "every = %ctr stats")
    assert box in list(shell.user_ns["every"]["id"])


def test_view_commands_fail_in_one_line(shell: Any, box: str) -> None:
    line = one_line_failure(*run(shell, f"%ctr console {box}")[:2], InvalidArgument)
    assert "needs a notebook" in line
    line = one_line_failure(*run(shell, "%ctr stats no-such-container")[:2], Exception)
    assert "no-such-container" in line
