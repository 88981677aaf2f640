"""The live views' backend surface on every backend: container events and stats, and a dashboard that
follows changes made outside the notebook (``docker`` CLI on the Docker backend)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ctr_magic import errors, features
from ctr_magic.monitoring import cpu_percent
from ctr_magic.notebook.widgets.console import Console
from ctr_magic.notebook.widgets.dashboard import Dashboard
from ctr_magic.types import StopTaskOptions

DEADLINE = 60.0  # generous: the machine is shared


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def view_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(("ctr-", "docker-events"))}


def test_events_follow_a_container_lifecycle(be: Any) -> None:
    events = features.require(be.service, features.Events)
    before = view_threads()
    seen: list[tuple[str, str]] = []
    with events.container_events() as stream:
        cid = be.create(cmd=["sleep", "3600"])
        be.service.start_container(cid)
        be.service.stop_container(cid, StopTaskOptions(signal=9, timeout=10, force=True))
        be.remove(cid)

        def deleted() -> bool:
            event = stream.get(timeout=0.5)
            if event is not None and event.container_id == cid:
                seen.append((event.action, event.attributes.get("exit_status", "")))
            return ("delete", "") in seen

        wait_for(deleted, "the delete event")
    actions = [a for a, _ in seen]
    for action in ("create", "start", "exit", "delete"):
        assert action in actions, seen
    assert actions.index("create") < actions.index("start") < actions.index("exit") < actions.index("delete")
    assert ("exit", "137") in seen, seen
    wait_for(lambda: view_threads() <= before, "the stream's thread to end", timeout=10)


def test_stats_of_a_busy_and_an_idle_container(be: Any) -> None:
    stats = features.require(be.service, features.Stats)
    busy = be.run(cmd=["sh", "-c", "while :; do :; done"])
    idle = be.run()
    first = {cid: stats.container_stats(cid) for cid in (busy, idle)}
    time.sleep(1.0)  # the measuring window
    second = {cid: stats.container_stats(cid) for cid in (busy, idle)}
    busy_cpu = cpu_percent(first[busy], second[busy])
    idle_cpu = cpu_percent(first[idle], second[idle])
    # Bounds for a shared machine: the busy loop gets what the scheduler leaves it, clearly more than idle.
    assert 5 <= busy_cpu <= 100 * second[busy].online_cpus + 10, busy_cpu
    assert idle_cpu < 3 <= busy_cpu - idle_cpu, (busy_cpu, idle_cpu)
    sample = second[idle]
    assert 0 < sample.memory_usage < 50 * 2**20
    assert sample.memory_limit is not None and sample.memory_limit > sample.memory_usage
    assert sample.pids is not None and sample.pids >= 1
    stopped = be.create(cmd=["true"])
    with pytest.raises(errors.CtrError) as info:
        stats.container_stats(stopped)
    assert stopped in str(info.value) and "\n" not in str(info.value)


def test_dashboard_follows_the_docker_cli(be: Any, conformance_env: Any) -> None:
    if be.name != "docker":
        pytest.skip("the docker CLI talks to the Docker backend (the containerd backend is covered with ctr)")
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker CLI is not installed (apt-get install docker.io)")
    host = f"unix://{conformance_env.dockerd_socket}"

    def cli(*args: str) -> str:
        return subprocess.run([docker, "-H", host, *args], check=True, capture_output=True, text=True,
                              timeout=120).stdout

    cid = be.new_id()
    before = view_threads()
    with Dashboard(be.service, stats_interval=0.5) as dashboard:
        created = time.monotonic()
        cli("create", "--name", cid, be.images["busybox"], "sleep", "3600")
        wait_for(lambda: cid in dashboard.rows, "the docker-created container's row")
        print(f"\ndocker create -> dashboard row: {(time.monotonic() - created) * 1000:.0f} ms (includes the CLI)")
        cli("start", cid)
        wait_for(lambda: dashboard.rows[cid].status == "running", "status running")
        wait_for(lambda: dashboard.rows[cid].memory is not None, "a stats sample in the row")
        dashboard.buttons(cid)["kill"].click()
        wait_for(lambda: dashboard.rows[cid].status == "stopped", "killed by the button")
        cli("rm", cid)
        wait_for(lambda: cid not in dashboard.rows, "the row to go")
    assert dashboard.threads == []
    wait_for(lambda: view_threads() <= before, "the dashboard's threads to end", timeout=10)


def test_console_round_trip(be: Any, box: str) -> None:
    before = view_threads()
    console = Console(be.service, box)
    try:
        wait_for(lambda: console.shell_pid > 0, "the shell's pid")
        console.send("echo out-$((6*7)); echo err-side >&2")
        wait_for(lambda: "out-42" in console.text("stdout"), "stdout")
        wait_for(lambda: "err-side" in console.text("stderr"), "stderr")
        assert "err-side" not in console.text("stdout")
        console.send("exit 5")
        wait_for(lambda: console.exit_code == 5, "exit code 5")
    finally:
        console.close()
    assert console.threads == []
    wait_for(lambda: view_threads() <= before, "the console's threads to end", timeout=10)
