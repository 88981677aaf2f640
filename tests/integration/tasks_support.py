"""Helpers and fixtures shared by the containers / tasks / exec integration tests.

A test module uses a fixture from here by binding it at module level (``svc = tasks_support.svc``).
Everything a test makes is recorded in a :class:`Tracker`, removed at teardown even when the test
failed, and checked for leaks (containers, tasks, snapshots, exec processes, FIFO directories).
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Optional

import pytest

from ctr_magic import errors
from ctr_magic.constants import FIFO_DIR_PREFIX, ROOTFS_PEEK_PREFIX
from ctr_magic.containerd.pb import snapshots_pb2, snapshots_pb2_grpc, tasks_pb2
from ctr_magic.containerd.service import DefaultService
from ctr_magic.types import ContainerSpec, CreateContainerRequest, DeleteContainerOptions


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll *predicate* until it returns something truthy; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """FIFO sets and rootfs peeks of this test go to a directory of its own (import it into a test module).

    The leak checks below then see only this test's directories, not those of another run on the host.
    """
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tmp")))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def svc(containerd_socket: str, namespace: str, data_dir: str) -> Iterator[DefaultService]:
    service = DefaultService.connect(containerd_socket, namespace, data_dir=data_dir)
    yield service
    service.close()


@pytest.fixture(scope="module")
def images(test_images: dict[str, str], ctr: Any) -> dict[str, str]:
    # Pulled by ctr: the tests also check ctr-magic uses what ctr stored.
    for name in ("busybox", "config"):
        ctr("images", "pull", "--plain-http", test_images[name])
    return test_images


@pytest.fixture
def made(svc: DefaultService, images: dict[str, str]) -> Iterator[Tracker]:
    """A Tracker for one test; afterwards nothing it made and no temporary directory is left."""
    before = our_temp_dirs()
    with tracking(svc, images["busybox"]) as tracker:
        yield tracker
    wait_for(lambda: not (our_temp_dirs() - before), what="temporary directories to go")


def temp_dirs(prefix: str) -> set[str]:
    base = tempfile.gettempdir()
    return {name for name in os.listdir(base) if name.startswith(prefix)}


def our_temp_dirs() -> set[str]:
    return temp_dirs(FIFO_DIR_PREFIX) | temp_dirs(ROOTFS_PEEK_PREFIX)


def snapshot_exists(svc: DefaultService, key: str, snapshotter: str = "overlayfs") -> bool:
    stub = svc.client.stub(snapshots_pb2_grpc.SnapshotsStub)
    try:
        svc.client.call(stub.Stat, snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key), what="stat")
    except errors.NotFound:
        return False
    return True


def task_pids(svc: DefaultService, container_id: str) -> list[int]:
    resp = svc.client.call(svc.tasks_stub.ListPids, tasks_pb2.ListPidsRequest(container_id=container_id),
                           what="pids")
    return [p.pid for p in resp.processes]


def only_init_left(svc: DefaultService, container_id: str) -> bool:
    """True once the task runs nothing but its init process (no exec left behind)."""
    return len(task_pids(svc, container_id)) == 1


class Tracker:
    """Creates containers for a test and removes them (task, record, snapshot) afterwards."""

    def __init__(self, svc: DefaultService, image: str) -> None:
        self.svc = svc
        self.image = image
        self.made: list[tuple[str, str, str]] = []  # (id, snapshotter, snapshot key)

    def create(self, cmd: Optional[list[str]] = None, *, image: str = "", cid: str = "",
               spec: Optional[ContainerSpec] = None, **kwargs: Any) -> str:
        cid = cid or new_id()
        spec = spec or ContainerSpec()
        if cmd is not None:
            spec.cmd = cmd
        key = kwargs.get("snapshot_id") or cid
        self.made.append((cid, kwargs.get("snapshotter") or "overlayfs", key))
        self.svc.create_container(CreateContainerRequest(id=cid, image_ref=image or self.image, spec=spec, **kwargs))
        return cid

    def running(self, cmd: Optional[list[str]] = None, **kwargs: Any) -> str:
        """A started container (``sleep`` as PID 1 unless *cmd*)."""
        cid = self.create(cmd or ["sleep", "100000"], **kwargs)
        self.svc.start_container(cid)
        return cid

    def cleanup(self) -> list[str]:
        """Remove everything made; return what leaked (should be nothing)."""
        problems = []
        for cid, snapshotter, key in self.made:
            try:
                self.svc.delete_container(cid, DeleteContainerOptions(force=True))
            except errors.NotFound:
                pass
            except errors.CtrError as exc:
                problems.append(f"cannot delete {cid}: {exc}")
            if self.svc.task_process(cid) is not None:
                problems.append(f"task {cid} left")
            if snapshot_exists(self.svc, key, snapshotter):
                problems.append(f"snapshot {key} left in {snapshotter}")
                with suppress(errors.CtrError):
                    self.svc.snapshot_store.remove_if_present(snapshotter, key)
        return problems


@contextmanager
def tracking(svc: DefaultService, image: str) -> Iterator[Tracker]:
    """A Tracker whose containers are removed on exit (even on failure); fails if anything leaked."""
    tracker = Tracker(svc, image)
    try:
        yield tracker
    finally:
        problems = tracker.cleanup()
    assert not problems, problems
