"""Widget views on a real containerd: the dashboard follows changes made with ``ctr``, its buttons act,
the console round-trips commands, stats are sane for a CPU burner and a 64 MiB allocator, and
closing a view leaves no thread or widget behind."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import tasks_support
from tasks_support import Tracker, new_id, wait_for

from ctr_magic import errors
from ctr_magic.notebook import stats as measuring
from ctr_magic.notebook.widgets.console import Console
from ctr_magic.notebook.widgets.dashboard import Dashboard

private_tempdir = tasks_support.private_tempdir  # autouse
data_dir = tasks_support.data_dir
svc = tasks_support.svc
images = tasks_support.images
made = tasks_support.made

DEADLINE = 30.0  # generous: the machine is shared


def widget_count() -> int:
    from ipywidgets.widgets.widget import _instances

    return len(_instances)


def view_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith(("ctr-", "docker-events"))}


@pytest.fixture
def quiet_views() -> Any:
    """Threads and widgets before the test; after it, none of the views' threads or widgets may be left."""
    before_threads, before_widgets = view_threads(), widget_count()
    yield before_widgets
    wait_for(lambda: view_threads() <= before_threads, timeout=DEADLINE, what="view threads to end")
    assert widget_count() == before_widgets


def test_dashboard_follows_changes_made_with_ctr(svc: Any, images: dict[str, str], ctr: Any, made: Tracker,
                                                  quiet_views: int) -> None:
    cid = new_id("dash")
    dashboard = Dashboard(svc, stats_interval=0)
    try:
        assert dashboard.threads, "the dashboard follows events on a thread"
        assert widget_count() > quiet_views
        created = time.monotonic()
        ctr("containers", "create", images["busybox"], cid, "sleep", "100000")
        made.made.append((cid, "overlayfs", cid))
        wait_for(lambda: cid in dashboard.rows, timeout=DEADLINE, what="the ctr-created container's row")
        latency = time.monotonic() - created
        print(f"\nctr containers create -> dashboard row: {latency * 1000:.0f} ms (includes ctr's own start-up)")
        assert dashboard.rows[cid].status == "created"
        ctr("tasks", "start", "-d", cid)
        wait_for(lambda: dashboard.rows[cid].status == "running", timeout=DEADLINE, what="status running")
        assert dashboard.rows[cid].pid > 0 and dashboard.rows[cid].uptime() != ""
        ctr("tasks", "kill", "-s", "SIGKILL", cid)
        wait_for(lambda: dashboard.rows[cid].status == "stopped", timeout=DEADLINE, what="status stopped")
        assert dashboard.rows[cid].exit_code == 137
        ctr("tasks", "delete", cid)
        ctr("containers", "delete", cid)
        wait_for(lambda: cid not in dashboard.rows, timeout=DEADLINE, what="the row to go")
    finally:
        dashboard.close()
    assert dashboard.threads == []
    assert dashboard.closed


def test_dashboard_buttons_start_stop_kill_remove(svc: Any, made: Tracker, quiet_views: int) -> None:
    cid = made.create(["sleep", "100000"], labels={"role": "button-test"})
    other = made.create(["sleep", "100000"], labels={"role": "other"})
    with Dashboard(svc, stats_interval=0.5, stop_timeout=2.0) as dashboard:
        wait_for(lambda: cid in dashboard.rows and other in dashboard.rows, timeout=DEADLINE, what="rows")
        dashboard.label_filter.value = "role=button-test"
        assert "1 of" in dashboard.header.value
        assert dashboard._rows[cid].labels.layout.display == "none"
        dashboard.show_labels.value = True  # labels on demand
        assert dashboard._rows[cid].labels.layout.display is None
        assert "role=button-test" in dashboard._rows[cid].labels.value
        dashboard.buttons(cid)["start"].click()
        wait_for(lambda: dashboard.rows[cid].status == "running", timeout=DEADLINE, what="started by the button")
        wait_for(lambda: dashboard.rows[cid].memory is not None, timeout=DEADLINE, what="a stats sample")
        dashboard.status_filter.value = "stopped"
        assert "0 of" in dashboard.header.value
        dashboard.status_filter.value = ""
        dashboard.buttons(cid)["stop"].click()  # sleep ignores SIGTERM as pid 1: killed after 2 s
        wait_for(lambda: dashboard.rows[cid].status == "stopped", timeout=DEADLINE, what="stopped by the button")
        dashboard.buttons(cid)["start"].click()
        wait_for(lambda: dashboard.rows[cid].status == "running", timeout=DEADLINE, what="started again")
        dashboard.buttons(cid)["kill"].click()
        wait_for(lambda: dashboard.rows[cid].status == "stopped", timeout=DEADLINE, what="killed by the button")
        dashboard.buttons(cid)["remove"].click()
        assert "remove" in dashboard.message.value and cid in dashboard.rows, "remove asks first"
        dashboard.buttons(cid)["cancel"].click()
        assert cid in svc.list_containers_by_label("role", "button-test")[0].id
        dashboard.buttons(cid)["remove"].click()
        dashboard.buttons(cid)["confirm"].click()
        wait_for(lambda: cid not in dashboard.rows, timeout=DEADLINE, what="removed by the button")
        with pytest.raises(errors.NotFound):
            svc.get_container(cid)
        assert "<table" in dashboard._repr_mimebundle_()["text/html"]


def test_console_round_trip_stderr_exit_code(svc: Any, made: Tracker, quiet_views: int) -> None:
    cid = made.running()
    console = Console(svc, cid)
    try:
        wait_for(lambda: console.shell_pid > 0, timeout=DEADLINE, what="the shell's pid")
        console.send("echo hello-from-console; echo oops >&2")
        wait_for(lambda: "hello-from-console" in console.text("stdout"), timeout=DEADLINE, what="stdout")
        wait_for(lambda: "oops" in console.text("stderr"), timeout=DEADLINE, what="stderr")
        assert "oops" not in console.text("stdout")
        assert 'class="ctr-stderr"' in console.output.value
        console.input.value = "echo typed"  # what pressing Enter in the browser does
        wait_for(lambda: "typed\n" in console.text("stdout"), timeout=DEADLINE, what="submitted input")
        assert console.input.value == "" and console.history[-1] == "echo typed"
        console.send("sleep 1000; echo after-interrupt")
        started = time.monotonic()
        wait_for(lambda: len(tasks_support.task_pids(svc, cid)) >= 3, timeout=DEADLINE, what="sleep running")
        console.send_interrupt()
        wait_for(lambda: "after-interrupt" in console.text("stdout"), timeout=DEADLINE, what="sleep interrupted")
        assert time.monotonic() - started < 100
        console.send("exit 3")
        wait_for(lambda: console.exit_code == 3, timeout=DEADLINE, what="exit code 3")
        wait_for(lambda: "exited with code 3" in console.status.value, timeout=DEADLINE, what="exit shown")
    finally:
        console.close()
    assert console.threads == []
    wait_for(lambda: tasks_support.only_init_left(svc, cid), timeout=DEADLINE, what="no exec left")


def test_console_closed_while_running_ends_the_shell(svc: Any, made: Tracker, quiet_views: int) -> None:
    cid = made.running()
    console = Console(svc, cid)
    wait_for(lambda: console.shell_pid > 0, timeout=DEADLINE, what="the shell's pid")
    console.close()
    assert console.threads == []
    wait_for(lambda: tasks_support.only_init_left(svc, cid), timeout=DEADLINE, what="no exec left")


def test_stats_of_cpu_burner_and_64mib_allocator(svc: Any, made: Tracker) -> None:
    burner = made.running(["sh", "-c", "while :; do :; done"])
    # awk holds a 64 MiB string (written, so resident) while it waits in sleep.
    allocator = made.running(["awk", 'BEGIN { s = sprintf("%67108864s", ""); gsub(/ /, "x", s); '
                                     'system("sleep 100000"); print length(s) }'])
    idle = made.running()
    mib = 2**20

    def allocated() -> bool:
        return svc.container_stats(allocator).memory_rss >= 60 * mib

    wait_for(allocated, timeout=60, what="the allocator's 64 MiB")
    frame = measuring.measure(svc, [burner, allocator, idle], interval=1.0)
    rows = {r["id"]: r for r in frame.to_dict("records")}
    cpus = svc.container_stats(burner).online_cpus
    # Bounds for a shared machine: the burner gets what the scheduler leaves it, but clearly more than idle.
    assert 5 <= rows[burner]["cpu_percent"] <= 100 * cpus + 10, rows[burner]
    assert rows[idle]["cpu_percent"] < 3 <= rows[burner]["cpu_percent"] - rows[idle]["cpu_percent"], rows
    assert 60 * mib <= rows[allocator]["memory_rss"] <= 200 * mib, rows[allocator]
    assert rows[allocator]["memory_usage"] >= 60 * mib
    assert rows[allocator]["memory_limit"] > rows[allocator]["memory_usage"]
    assert rows[idle]["memory_usage"] < 20 * mib
    assert all(rows[c]["pids"] >= 1 for c in rows)
    assert rows[burner]["block_read"] is not None and rows[idle]["net_rx"] is not None
    assert "MB" in repr(frame) or "kB" in repr(frame)


def test_stats_of_a_stopped_container_is_one_line(svc: Any, made: Tracker) -> None:
    never_started = made.create(["true"])
    with pytest.raises(errors.NotFound) as info:
        measuring.measure(svc, [never_started])
    assert never_started in str(info.value) and "\n" not in str(info.value)
    exited = made.running(["true"])
    wait_for(lambda: str(svc.get_task_info(exited).status) == "stopped", timeout=DEADLINE, what="exit")
    with pytest.raises(errors.FailedPrecondition) as info:
        measuring.measure(svc, [exited])
    assert exited in str(info.value) and "\n" not in str(info.value)


def test_event_stream_close_ends_its_thread(svc: Any) -> None:
    before = widget_count()
    stream = svc.container_events()
    assert stream.threads
    stream.close()
    assert stream.threads == []
    assert widget_count() == before
