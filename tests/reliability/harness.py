"""The fault harness: seeded trials that interrupt an operation, then check nothing leaked.

A trial runs one operation in the main thread and, at a moment drawn from its seed, raises
KeyboardInterrupt there (``_thread.interrupt_main``: what a notebook's Stop button does). Whatever
happened, the invariants must hold afterwards and the same operation must then succeed.

Replay one trial with ``CTR_MAGIC_FAULT_REPLAY=<operation>:<seed>``; ``CTR_MAGIC_FAULT_TRIALS`` sets
the trials per operation (``make test`` runs a few, ``make soak`` at least 50).
"""

from __future__ import annotations

import _thread
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

from images_support import active_ingests, image_names

from ctr_magic.constants import FIFO_DIR_PREFIX, ROOTFS_PEEK_PREFIX
from ctr_magic.containerd.leases import list_leases
from ctr_magic.containerd.pb import tasks_pb2
from ctr_magic.containerd.service import DefaultService
from ctr_magic.daemon import mounts_under

BASE_SEED = int(os.environ.get("CTR_MAGIC_FAULT_SEED", "14"))


def trials_per_operation(default: int = 3) -> int:
    return int(os.environ.get("CTR_MAGIC_FAULT_TRIALS", str(default)))


def trial_seeds(operation: str, count: int) -> list[int]:
    """The seeds of *operation*'s trials (or the one being replayed)."""
    replay = os.environ.get("CTR_MAGIC_FAULT_REPLAY", "")
    if replay:
        name, _, seed = replay.partition(":")
        return [int(seed)] if name == operation else []
    return [BASE_SEED * 100_000 + sum(map(ord, operation)) * 1000 + i for i in range(count)]


@dataclass
class Outcome:
    """What one trial did: ``interrupted`` (KeyboardInterrupt landed), ``finished`` or ``failed`` (a CtrError)."""

    operation: str
    seed: int
    delay: float
    result: str
    error: Optional[BaseException] = None


@dataclass
class Tally:
    """Counts for the README figures: trials and faults per operation, leaks found."""

    trials: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    leaks: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.trials[outcome.operation] = self.trials.get(outcome.operation, 0) + 1
        if outcome.result != "finished":
            self.faults[outcome.operation] = self.faults.get(outcome.operation, 0) + 1


def interrupted_run(operation: str, seed: int, run: Callable[[], Any], typical: float) -> Outcome:
    """Run *run* in this (main) thread with a KeyboardInterrupt at a seeded moment in [0, 1.2 x typical]."""
    delay = random.Random(seed).uniform(0.0, 1.2 * typical)
    print(f"fault trial {operation}:{seed} interrupt after {delay * 1000:.0f} ms "
          f"(replay: CTR_MAGIC_FAULT_REPLAY={operation}:{seed})", flush=True)
    timer = threading.Timer(delay, _thread.interrupt_main)
    outcome = Outcome(operation, seed, delay, "finished")
    try:
        try:
            timer.start()
            run()
        finally:
            timer.cancel()
            timer.join()
            _let_pending_interrupt_land()
    except KeyboardInterrupt as exc:
        outcome.result, outcome.error = "interrupted", exc
    except Exception as exc:  # a CtrError saying the operation could not finish is a fine outcome
        outcome.result, outcome.error = "failed", exc
    return outcome


def _let_pending_interrupt_land() -> None:
    # interrupt_main only sets a flag; the interpreter raises it at its next check: give it one.
    for _ in range(1000):
        pass


@dataclass
class Baseline:
    """What exists before a trial; the invariants compare against it."""

    containers: set[str]
    images: set[str]
    fifo_dirs: set[str]
    mounts: set[str]


def baseline(svc: DefaultService) -> Baseline:
    return Baseline(containers={c.id for c in svc.list_containers()}, images=image_names(svc.client),
                    fifo_dirs=_our_temp_dirs(), mounts=set(mounts_under([tempfile.gettempdir()])))


def _our_temp_dirs() -> set[str]:
    base = tempfile.gettempdir()
    return {n for n in os.listdir(base) if n.startswith((FIFO_DIR_PREFIX, ROOTFS_PEEK_PREFIX))}


def leaks(svc: DefaultService, before: Baseline, *, may_add_container: str = "", may_add_image: str = "",
          running: tuple[str, ...] = (), settle: float = 10.0) -> list[str]:
    """Everything the invariants find wrong (empty: all hold). Polls up to *settle* seconds, as
    cleanup on another thread (a FIFO copier, a waiting exec) may finish just after the call."""
    deadline = time.monotonic() + settle
    while True:
        found = list(_check(svc, before, may_add_container, may_add_image, running))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _check(svc: DefaultService, before: Baseline, may_add_container: str, may_add_image: str,
           running: tuple[str, ...]) -> Iterator[str]:
    client = svc.client
    leases = [lease.id for lease in list_leases(client)]
    if leases:
        yield f"leases left: {leases}"
    ingests = active_ingests(client)
    if ingests:
        yield f"ingests left: {ingests}"
    extra_dirs = _our_temp_dirs() - before.fifo_dirs
    if extra_dirs:
        yield f"FIFO / peek directories left: {sorted(extra_dirs)}"
    extra_mounts = set(mounts_under([tempfile.gettempdir()])) - before.mounts
    if extra_mounts:
        yield f"mounts left: {sorted(extra_mounts)}"
    for cid in running:
        pids = client.call(svc.tasks_stub.ListPids, tasks_pb2.ListPidsRequest(container_id=cid), what="pids")
        if len(pids.processes) != 1:
            yield f"exec processes left in {cid}: {[p.pid for p in pids.processes]}"
    containers = {c.id for c in svc.list_containers()}
    extra = containers - before.containers - {may_add_container}
    if extra or before.containers - containers:
        yield f"containers changed: added {sorted(extra)}, lost {sorted(before.containers - containers)}"
    for cid in containers - before.containers:  # the operation's own container must be whole
        info = svc.get_container(cid)
        if not info.snapshot_key or not _snapshot_exists(svc, info.snapshotter, info.snapshot_key):
            yield f"half-made container {cid}: no snapshot"
    images = image_names(client)
    extra_images = images - before.images - {may_add_image}
    if extra_images:
        yield f"images added: {sorted(extra_images)}"
    for snap in svc.list_snapshots(svc.snapshotter):
        if snap.kind.lower() == "active" and snap.name not in containers and not snap.labels:
            yield f"active snapshot without a container: {snap.name}"


def _snapshot_exists(svc: DefaultService, snapshotter: str, key: str) -> bool:
    return any(s.name == key for s in svc.list_snapshots(snapshotter or svc.snapshotter))
