"""Ctrl-C at the moment containerd's shim is being set up for a task (its bundle directory has just
appeared): nothing of the task stays and the next start works. The seeded start trials hit that
moment only now and then (soak seed start:1412xxxx left "failed to start shim: mkdir ... file
exists"); here a watcher thread waits for the bundle directory and interrupts right then."""

from __future__ import annotations

import _thread
import os
import threading
import time
from collections.abc import Iterator

import pytest
from outages import wait_for

from ctr_magic.containerd.service import DefaultService
from ctr_magic.daemon import Environment
from ctr_magic.types import ContainerSpec, CreateContainerRequest, DeleteContainerOptions

ROUNDS = 3


@pytest.fixture(scope="module")
def image(svc: DefaultService, images: dict[str, str]) -> str:
    svc.pull_image(images["busybox"])
    return images["busybox"]


@pytest.fixture
def container(svc: DefaultService, image: str, request: pytest.FixtureRequest) -> Iterator[str]:
    cid = f"intr-start-{os.getpid()}-{request.node.callspec.id}"
    svc.create_container(CreateContainerRequest(id=cid, image_ref=image, spec=ContainerSpec(cmd=["sleep", "100000"])))
    yield cid
    svc.delete_container(cid, DeleteContainerOptions(force=True))


def _interrupt_when(path: str, stop: threading.Event) -> None:
    while not stop.is_set():
        if os.path.exists(path):
            _thread.interrupt_main()
            return
        time.sleep(0.0005)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_start_interrupted_while_the_shim_starts_leaves_nothing(
        env: Environment, svc: DefaultService, container: str, round_: int) -> None:
    bundle = os.path.join(env.run_dir, "containerd", "io.containerd.runtime.v2.task", svc.namespace, container)
    stop = threading.Event()
    watcher = threading.Thread(target=_interrupt_when, args=(bundle, stop), daemon=True)
    watcher.start()
    interrupted = False
    try:
        try:
            svc.start_container(container)
        finally:
            stop.set()
            watcher.join()
            for _ in range(1000):  # let a pending interrupt land here
                pass
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        wait_for(lambda: not os.path.exists(bundle), 20, f"the task's bundle {bundle} to go")
        assert svc.task_process(container) is None, "the interrupted start left its task"
    svc.start_container(container)  # before: "failed to start shim: mkdir ...: file exists"
    assert svc.task_process(container) is not None
