"""containerd killed and restarted under load, and a registry that cuts, corrupts and stalls: seeded
trials; afterwards nothing leaked and the same work succeeds."""

from __future__ import annotations

import contextlib
import io
import random
import secrets
import threading
from collections.abc import Iterator

import pytest
from harness import Outcome, baseline, leaks, trial_seeds, trials_per_operation
from outages import kill_containerd, restart
from registry_servers import TamperingProxy

from ctr_magic import errors
from ctr_magic.containerd.service import DefaultService
from ctr_magic.daemon import Environment
from ctr_magic.registry import RegistryOptions
from ctr_magic.types import (
    ContainerSpec,
    CreateContainerRequest,
    DeleteContainerOptions,
    DeleteImageOptions,
    ExecTaskRequest,
)

TRIALS = max(1, trials_per_operation() // 2)
WORKERS = 4
CLEANUP_DEADLINE = 60.0


@pytest.fixture(scope="module")
def image(svc: DefaultService, images: dict[str, str]) -> str:
    svc.pull_image(images["busybox"])
    return images["busybox"]


@pytest.fixture(scope="module")
def box(svc: DefaultService, image: str) -> Iterator[str]:
    cid = f"load-box-{secrets.token_hex(3)}"
    svc.create_container(CreateContainerRequest(id=cid, image_ref=image, spec=ContainerSpec(cmd=["sleep", "1000000"])))
    svc.start_container(cid)
    yield cid
    svc.delete_container(cid, DeleteContainerOptions(force=True))


def _remove(svc: DefaultService, cid: str) -> None:
    """Delete *cid*, waiting out an outage (the caller owns its cleanup)."""
    deadline = threading.Event()
    timer = threading.Timer(CLEANUP_DEADLINE, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            try:
                svc.delete_container(cid, DeleteContainerOptions(force=True))
                return
            except errors.NotFound:
                return
            except errors.Unavailable:
                svc.client.wait_until_reachable(5.0)
        raise AssertionError(f"could not delete {cid} within {CLEANUP_DEADLINE}s")
    finally:
        timer.cancel()


def _load(svc: DefaultService, image: str, box: str, stop: threading.Event, seen: list[str], worker: int) -> None:
    """Exec in the shared box, and create / start / exec / delete containers of its own, until *stop*."""
    n = 0
    while not stop.is_set():
        n += 1
        cid = f"load-{worker}-{n}-{secrets.token_hex(2)}"
        try:
            svc.exec_task(box, ExecTaskRequest(args=["true"], stdout=io.BytesIO()))
            svc.create_container(CreateContainerRequest(id=cid, image_ref=image,
                                                        spec=ContainerSpec(cmd=["sleep", "1000"])))
            svc.start_container(cid)
            svc.exec_task(cid, ExecTaskRequest(args=["true"], stdout=io.BytesIO()))
        except errors.CtrError as exc:
            seen.append(type(exc).__name__)
        except BaseException as exc:  # anything but CtrError is a defect: report it
            seen.append(f"NOT A CtrError: {exc!r}")
        finally:
            _remove(svc, cid)


@pytest.mark.parametrize("seed", trial_seeds("containerd-kill", TRIALS))
def test_containerd_killed_under_load(env: Environment, svc: DefaultService, image: str, box: str,
                                      seed: int) -> None:
    rng = random.Random(seed)
    kill_after, outage = rng.uniform(0.2, 2.0), rng.uniform(0.2, 3.0)
    print(f"fault trial containerd-kill:{seed} kill after {kill_after:.2f}s, down {outage:.2f}s "
          f"(replay: CTR_MAGIC_FAULT_REPLAY=containerd-kill:{seed})", flush=True)
    before = baseline(svc)
    stop = threading.Event()
    seen: list[str] = []
    workers = [threading.Thread(target=_load, args=(svc, image, box, stop, seen, i)) for i in range(WORKERS)]
    for worker in workers:
        worker.start()
    try:
        stop.wait(kill_after)  # the fault's seeded moment, not a synchronisation
        kill_containerd(env)
        stop.wait(outage)
        restart(env)
        stop.wait(0.5)  # some load after the restart too
    finally:
        stop.set()
        for worker in workers:
            worker.join(CLEANUP_DEADLINE + 30)
    assert not [s for s in seen if s.startswith("NOT A")], seen
    assert svc.task_process(box) is not None, "the running container did not survive the restart"
    found = leaks(svc, before, running=(box,))
    assert not found, f"trial containerd-kill:{seed} left: {found}"
    _load_once(svc, image, box)


def _load_once(svc: DefaultService, image: str, box: str) -> None:
    stop = threading.Event()
    stop.set()
    seen: list[str] = []
    cid = f"after-{secrets.token_hex(3)}"
    svc.create_container(CreateContainerRequest(id=cid, image_ref=image, spec=ContainerSpec(cmd=["sleep", "1000"])))
    try:
        svc.start_container(cid)
        assert svc.exec_task(cid, ExecTaskRequest(args=["true"], stdout=io.BytesIO())).exit_code == 0
    finally:
        svc.delete_container(cid, DeleteContainerOptions(force=True))
    assert not seen


@pytest.mark.parametrize("seed", trial_seeds("registry-fault", TRIALS * 2))
def test_registry_that_cuts_corrupts_or_stalls(env: Environment, svc: DefaultService, images: dict[str, str],
                                                seed: int) -> None:
    assert env.info is not None
    rng = random.Random(seed)
    fault = rng.choice(["cut", "corrupt", "stall"])
    at = rng.randint(1, 200_000)
    print(f"fault trial registry-fault:{seed} {fault} at byte {at} "
          f"(replay: CTR_MAGIC_FAULT_REPLAY=registry-fault:{seed})", flush=True)
    ref = images["layers"]
    _forget_image(svc, ref)
    before = baseline(svc)
    saved = svc.registry_options
    with TamperingProxy(env.info.registry_addr) as proxy:
        proxied = ref.replace(env.info.registry_addr, proxy.addr)
        if fault == "cut":
            proxy.cut_after = at
        elif fault == "stall":
            proxy.stall_after = at
        svc.registry_options = RegistryOptions(stall_timeout=1.5)
        outcome = Outcome("registry-fault", seed, 0.0, "finished")
        try:
            if fault == "corrupt":
                layers = svc_layers(svc, proxied)
                proxy.corrupt.add(rng.choice(layers))
            svc.pull_image(proxied)
        except errors.CtrError as exc:
            outcome.result, outcome.error = "failed", exc
        finally:
            svc.registry_options = saved
        found = leaks(svc, before, may_add_image=proxied)
        assert not found, f"trial registry-fault:{seed} ({fault}, {outcome.result}) left: {found}"
        _forget_image(svc, proxied)
    svc.pull_image(ref)  # the same pull, from the honest registry
    _forget_image(svc, ref)


def svc_layers(svc: DefaultService, ref: str) -> list[str]:
    from ctr_magic.reference import parse_reference
    from ctr_magic.registry import RegistryClient, parse

    parsed = parse_reference(ref)
    with RegistryClient(parsed.registry_host, svc.registry_options) as client:
        raw, desc = client.get_manifest(parsed)
        return [layer.digest for layer in parse(raw, desc.media_type, ref).layers]


def _forget_image(svc: DefaultService, ref: str) -> None:
    with contextlib.suppress(errors.NotFound):
        svc.delete_image(ref, DeleteImageOptions(synchronous=True))
