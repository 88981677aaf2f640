"""The views' pure parts: row filters, durations, CPU % from two samples, the static renderings."""

from __future__ import annotations

import pytest

from ctr_magic.docker.watch import _parse_read, decode
from ctr_magic.monitoring import StatsSample, cpu_percent, effective_limit
from ctr_magic.notebook.widgets.rows import RowState, format_duration, html_table, text_table


def sample(at: float, cpu_ns: int) -> StatsSample:
    return StatsSample("c", at, cpu_ns, 2, 10, 100, 5, 1)


def test_cpu_percent_is_of_one_core() -> None:
    assert cpu_percent(sample(10.0, 0), sample(12.0, 2_000_000_000)) == pytest.approx(100.0)
    assert cpu_percent(sample(10.0, 0), sample(11.0, 1_500_000_000)) == pytest.approx(150.0)
    assert cpu_percent(sample(10.0, 5), sample(10.0, 9)) == 0.0  # no time passed
    assert cpu_percent(sample(10.0, 9), sample(11.0, 5)) == 0.0  # a restarted counter never goes negative


def test_unlimited_memory_is_the_host_memory() -> None:
    host = effective_limit(None)
    assert host is not None and host > 2**20
    assert effective_limit(2**63 - 4096) == host
    assert effective_limit(64 * 2**20) == 64 * 2**20


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59.9, "59s"), (61, "1m 1s"), (3700, "1h 1m"),
                                               (90000, "1d 1h")])
def test_durations(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_row_filters() -> None:
    row = RowState("web", status="running", labels={"role": "web", "tier": ""})
    assert row.matches("", "") and row.matches("role", "running") and row.matches("role=web", "")
    assert not row.matches("role=db", "") and not row.matches("", "stopped") and not row.matches("team", "")
    assert row.matches("tier=", "")


def test_static_table_escapes_and_colours() -> None:
    rows = [RowState("<b>x</b>", image="img", status="stopped", exit_code=137), RowState("y", status="running",
                                                                                        cpu=12.345, memory=2_000_000,
                                                                                        memory_limit=8_000_000)]
    page = html_table(rows, "containers")
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert "stopped (137)" in page and "color:#757575" in page and "color:#2e7d32" in page
    assert "12.3" in page and "2.0 MB / 8.0 MB" in page
    text = text_table(rows, "containers")
    lines = text.splitlines()
    assert lines[0] == "containers: 2" and lines[1].split() [:3] == ["id", "image", "status"]
    assert len({line.index("status") for line in lines[1:2]}) == 1
    assert "no containers" in html_table([], "empty")


def test_docker_event_and_time_decoding() -> None:
    event = decode({"Type": "container", "Action": "die", "timeNano": 1_700_000_000_500_000_000,
                    "Actor": {"ID": "abc", "Attributes": {"name": "web", "exitCode": "137"}}})
    assert event is not None and (event.container_id, event.action) == ("web", "exit")
    assert event.attributes["exit_status"] == "137" and event.time == pytest.approx(1_700_000_000.5)
    assert decode({"Type": "container", "Action": "exec_start: sh", "Actor": {"ID": "abc"}}) is None
    assert decode({"Type": "network", "Action": "connect"}) is None
    assert _parse_read("2026-12-02T11:00:00.250000000Z") == pytest.approx(1796209200.25)
    assert _parse_read("2026-12-02T12:00:00.5+01:00") == pytest.approx(1796209200.5)
