"""What the live views wait for: event delivery and one stats sample, ctr-magic vs ctr, in one run.

* event delivery: both subscribers listen at once (ctr-magic's EventStream in this process and
  ``ctr events`` as a subprocess); a container is created with ``ctr containers create`` and each
  side's time from launching that command to seeing the ``/containers/create`` event for it is
  recorded. Same events, same moment: the ratio is the subscriber's own overhead.
* one stats sample of a running task: ``container_stats`` (Tasks.Metrics + decoding) vs
  ``ctr task metrics``.
"""

from __future__ import annotations

import queue
import secrets
import subprocess
import tempfile
import threading
import time

from ctr_magic.containerd.service import DefaultService
from ctr_magic.env import EnvironmentInfo, find_binary
from ctr_magic.testimages import publish_test_images
from ctr_magic.types import ContainerSpec, CreateContainerRequest, DeleteContainerOptions

from .runner import Comparison, interleave, timed

NAMESPACE = "ctr-magic-bench-events"
EVENT_RUNS = 20
STATS_CALLS = 40
DEADLINE = 30.0


def run(env: EnvironmentInfo) -> list[Comparison]:
    with tempfile.TemporaryDirectory(prefix="ctr-magic-bench-events-") as work:
        image = publish_test_images(env.registry_addr, work_dir=work)["busybox"]
        svc = DefaultService.connect(env.containerd_socket, NAMESPACE, data_dir=work)
        ctr = [find_binary("ctr"), "--address", env.containerd_socket, "-n", NAMESPACE]
        subprocess.run([*ctr, "images", "pull", "--plain-http", image], check=True, stdout=subprocess.DEVNULL)
        try:
            return [_event_delivery(svc, ctr, image), _stats_sample(svc, ctr, image)]
        finally:
            for info in svc.list_containers():
                svc.delete_container(info.id, DeleteContainerOptions(cleanup_snapshot=True, force=True))
            svc.close()


def _event_delivery(svc: DefaultService, ctr: list[str], image: str) -> Comparison:
    ours_seen: queue.Queue[tuple[str, float]] = queue.Queue()
    ref_seen: queue.Queue[tuple[str, float]] = queue.Queue()
    stream = svc.container_events()
    reference = subprocess.Popen([*ctr, "events"], stdout=subprocess.PIPE, text=True, bufsize=1)

    def follow_ours() -> None:
        for event in stream:
            if event.action == "create":
                ours_seen.put((event.container_id, time.perf_counter()))

    def follow_ctr() -> None:
        assert reference.stdout is not None
        for line in reference.stdout:
            if "/containers/create" in line:
                ref_seen.put((line, time.perf_counter()))

    threads = [threading.Thread(target=follow_ours, daemon=True), threading.Thread(target=follow_ctr, daemon=True)]
    for thread in threads:
        thread.start()
    _warm_up(svc, ctr, image, ref_seen)
    mine: list[float] = []
    theirs: list[float] = []
    try:
        for _ in range(EVENT_RUNS):
            cid = f"ev-{secrets.token_hex(4)}"
            launched = time.perf_counter()
            subprocess.run([*ctr, "containers", "create", image, cid, "true"], check=True, stdout=subprocess.DEVNULL)
            mine.append(_wait_for(ours_seen, lambda item, c=cid: item[0] == c) - launched)
            theirs.append(_wait_for(ref_seen, lambda item, c=cid: c in item[0]) - launched)
            svc.delete_container(cid, DeleteContainerOptions(cleanup_snapshot=True))
    finally:
        stream.close()
        reference.terminate()
        reference.wait(10)
    return Comparison("container created with ctr -> event seen by the subscriber", mine, theirs, "ctr events",
                      notes=["both subscribed at once; times include `ctr containers create` itself"])


def _warm_up(svc: DefaultService, ctr: list[str], image: str, ref_seen: queue.Queue[tuple[str, float]]) -> None:
    """Create containers until `ctr events` prints one (it has no other readiness signal)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        cid = f"warm-{secrets.token_hex(4)}"
        subprocess.run([*ctr, "containers", "create", image, cid, "true"], check=True, stdout=subprocess.DEVNULL)
        svc.delete_container(cid, DeleteContainerOptions(cleanup_snapshot=True))
        try:
            _wait_for(ref_seen, lambda item, c=cid: c in item[0], timeout=1.0)
            return
        except queue.Empty:
            continue
    raise RuntimeError("`ctr events` printed nothing")


def _wait_for(seen: queue.Queue[tuple[str, float]], matches: object, timeout: float = DEADLINE) -> float:
    deadline = time.monotonic() + timeout
    while True:
        item = seen.get(timeout=max(0.0, deadline - time.monotonic()))
        if matches(item):  # type: ignore[operator]
            return item[1]


def _stats_sample(svc: DefaultService, ctr: list[str], image: str) -> Comparison:
    box = f"stats-{secrets.token_hex(4)}"
    svc.create_container(CreateContainerRequest(id=box, image_ref=image, spec=ContainerSpec(cmd=["sleep", "100000"])))
    svc.start_container(box)

    def ours() -> float:
        return timed(lambda: svc.container_stats(box))

    def with_ctr() -> float:
        argv = [*ctr, "task", "metrics", box]
        return timed(lambda: subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE))

    mine, theirs = interleave(ours, with_ctr, STATS_CALLS)
    return Comparison("one stats sample of a running task", mine, theirs, "ctr task metrics")
