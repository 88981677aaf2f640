"""Snapshots against the real containerd: prepare, commit, list (with usage), mounts, checkpoints,
containers started from snapshots, and the bad-input cases of each."""

from __future__ import annotations

import contextlib
import io
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ctr_magic import errors
from ctr_magic.constants import LABEL_CHECKPOINT_CONTAINER, LABEL_CHECKPOINT_VERSION, LABEL_GC_ROOT
from ctr_magic.containerd.leases import Lease
from ctr_magic.containerd.pb import snapshots_pb2
from ctr_magic.containerd.service import DefaultService
from ctr_magic.types import (
    ContainerSpec,
    CreateContainerRequest,
    DeleteContainerOptions,
    ExecTaskRequest,
    StopTaskOptions,
)

SN = "overlayfs"


def _key(prefix: str = "k") -> str:
    return f"test-{prefix}-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def base(service: DefaultService, test_images: dict[str, str]) -> str:
    """The busybox image's top snapshot (chain ID): a committed snapshot to build on."""
    service.pull_image(test_images["busybox"])
    return service.images.resolve(test_images["busybox"]).top_chain_id


@pytest.fixture
def snapshots(service: DefaultService) -> Iterator[list[str]]:
    """Keys to remove at the end (newest first, so children go before their parents)."""
    keys: list[str] = []
    yield keys
    for key in reversed(keys):
        with contextlib.suppress(errors.NotFound):
            service.remove_snapshot(SN, key)


@pytest.fixture
def containers(service: DefaultService, snapshots: list[str]) -> Iterator[list[str]]:
    """Container ids to delete at the end (before the snapshots they may be built on)."""
    ids: list[str] = []
    yield ids
    for cid in reversed(ids):
        with contextlib.suppress(errors.NotFound):
            service.delete_container(cid, DeleteContainerOptions(force=True))


def sh(service: DefaultService, cid: str, script: str) -> str:
    out, err = io.BytesIO(), io.BytesIO()
    res = service.exec_task(cid, ExecTaskRequest(args=["sh", "-c", script], stdout=out, stderr=err))
    assert res.exit_code == 0, err.getvalue()
    return out.getvalue().decode()


def _names(service: DefaultService) -> set[str]:
    return {s.name for s in service.list_snapshots(SN, usage=False)}


def test_prepare_commit_list(service: DefaultService, base: str, snapshots: list[str]) -> None:
    active, committed = _key("active"), _key("committed")
    service.prepare_snapshot(SN, active, base)
    snapshots.append(active)
    by_name = {s.name: s for s in service.list_snapshots(SN)}
    info = by_name[active]
    assert (info.kind, info.parent) == ("active", base)
    assert LABEL_GC_ROOT in info.labels, "a prepared snapshot must survive garbage collection"
    assert info.created is not None and info.created.tzinfo is not None and info.updated is not None
    assert by_name[base].kind == "committed" and by_name[base].size > 500_000, "busybox layer disk usage"
    assert by_name[base].inodes > 50

    mounts = service.snapshot_mounts(SN, active)
    assert len(mounts) == 1 and mounts[0].type == "overlay"
    assert any(o.startswith("upperdir=") for o in mounts[0].options)
    assert any(o.startswith("lowerdir=") for o in mounts[0].options)

    service.commit_snapshot(SN, committed, active)
    snapshots.remove(active)
    snapshots.append(committed)
    after = service.stat_snapshot(SN, committed)
    assert (after.kind, after.parent) == ("committed", base) and LABEL_GC_ROOT in after.labels
    assert active not in _names(service), "committing consumes the active key"


def test_commit_twice_under_one_name(service: DefaultService, base: str, snapshots: list[str]) -> None:
    name, first, second = _key("name"), _key("a"), _key("b")
    for key in (first, second):
        service.prepare_snapshot(SN, key, base)
        snapshots.append(key)
    service.commit_snapshot(SN, name, first)
    snapshots.remove(first)
    snapshots.append(name)
    with pytest.raises(errors.AlreadyExists, match=f"{name}.*already exists"):
        service.commit_snapshot(SN, name, second)
    assert service.stat_snapshot(SN, second).kind == "active", "the second active snapshot is untouched"


def test_prepare_existing_key_already_exists(service: DefaultService, base: str, snapshots: list[str]) -> None:
    key = _key()
    service.prepare_snapshot(SN, key, base)
    snapshots.append(key)
    with pytest.raises(errors.AlreadyExists, match=key):
        service.prepare_snapshot(SN, key, base)


def test_usage_counts_written_data(service: DefaultService, base: str, snapshots: list[str]) -> None:
    from ctr_magic.containerd.mounts import mount_snapshot

    key = _key()
    service.prepare_snapshot(SN, key, base)
    snapshots.append(key)
    before = service.snapshot_usage(SN, key)
    directory, unmount = mount_snapshot(service, SN, key)
    try:
        with open(f"{directory}/blob.bin", "wb") as fh:
            fh.write(b"\1" * (1 << 20))
    finally:
        unmount()
    size, inodes = service.snapshot_usage(SN, key)
    assert size >= before[0] + (1 << 20) and inodes == before[1] + 1
    listed = next(s for s in service.list_snapshots(SN) if s.name == key)
    assert listed.size == size and listed.inodes == inodes


@pytest.mark.parametrize(
    ("call", "missing"),
    [
        (lambda s: s.commit_snapshot("", "n", "k"), "snapshotter"),
        (lambda s: s.commit_snapshot(SN, "", "k"), "name"),
        (lambda s: s.commit_snapshot(SN, "n", ""), "key"),
        (lambda s: s.prepare_snapshot("", "k", "p"), "snapshotter"),
        (lambda s: s.prepare_snapshot(SN, "", "p"), "key"),
        (lambda s: s.prepare_snapshot(SN, "k", ""), "parent"),
        (lambda s: s.snapshot_mounts("", "k"), "snapshotter"),
        (lambda s: s.snapshot_mounts(SN, ""), "key"),
        (lambda s: s.list_snapshots(""), "snapshotter"),
        (lambda s: s.create_container_from_snapshot(CreateContainerRequest(id="", image_ref="x", snapshot_id="s")),
         "id"),
        (lambda s: s.create_container_from_snapshot(CreateContainerRequest(id="c", image_ref="", snapshot_id="s")),
         "image_ref"),
        (lambda s: s.create_container_from_snapshot(CreateContainerRequest(id="c", image_ref="x")), "snapshot_id"),
        (lambda s: s.checkpoint("", "v1"), "container_id"),
        (lambda s: s.checkpoint("c", ""), "version"),
    ],
)
def test_missing_arguments_are_invalid(service: DefaultService, call: Callable, missing: str) -> None:
    before = _names(service)
    with pytest.raises(errors.InvalidArgument, match=rf"\b{missing}\b.*required"):
        call(service)
    assert _names(service) == before


def test_unknown_keys_are_not_found(service: DefaultService, base: str) -> None:
    before = _names(service)
    ghost = _key("ghost")
    with pytest.raises(errors.NotFound, match=f"no active snapshot '{ghost}'"):
        service.commit_snapshot(SN, _key(), ghost)
    with pytest.raises(errors.NotFound, match=f"parent snapshot '{ghost}' does not exist"):
        service.prepare_snapshot(SN, _key(), ghost)
    with pytest.raises(errors.NotFound, match=ghost):
        service.snapshot_mounts(SN, ghost)
    with pytest.raises(errors.NotFound, match=ghost):
        service.stat_snapshot(SN, ghost)
    with pytest.raises(errors.NotFound, match=ghost):
        service.remove_snapshot(SN, ghost)
    assert _names(service) == before, "failed calls leave no snapshot behind"


def test_wrong_kinds_fail_clearly(service: DefaultService, base: str, snapshots: list[str]) -> None:
    with pytest.raises(errors.FailedPrecondition, match="committed; only active and view"):
        service.snapshot_mounts(SN, base)
    key = _key()
    service.prepare_snapshot(SN, key, base)
    snapshots.append(key)
    with pytest.raises(errors.CtrError):
        service.prepare_snapshot(SN, _key(), key)  # an active snapshot cannot be a parent
    with pytest.raises(errors.FailedPrecondition, match="built on it"):
        service.remove_snapshot(SN, base)  # the image layer has children
    version, child = _key("version"), _key("child")
    service.commit_snapshot(SN, version, key)
    snapshots.remove(key)
    snapshots.append(version)
    service.prepare_snapshot(SN, child, version)
    snapshots.append(child)
    with pytest.raises(errors.FailedPrecondition, match=rf"removing snapshot '{version}'.*: {child} is built on it"):
        service.remove_snapshot(SN, version)
    assert {version, child} <= _names(service)  # nothing was removed


def test_unknown_snapshotter(service: DefaultService, base: str) -> None:
    for call in (lambda: service.list_snapshots("nonesuch"), lambda: service.prepare_snapshot("nonesuch", "k", base)):
        with pytest.raises(errors.InvalidArgument, match="snapshotter 'nonesuch' is not loaded"):
            call()


# -- checkpoints and containers from snapshots --------------------------------------------------


def _box(service: DefaultService, image: str, containers: list[str], **kw: str) -> str:
    cid = f"t-{secrets.token_hex(5)}"
    req = CreateContainerRequest(id=cid, image_ref=image, spec=ContainerSpec(cmd=["sleep", "600"]), **kw)
    create = service.create_container_from_snapshot if kw.get("snapshot_id") else service.create_container
    create(req)
    containers.append(cid)
    service.start_container(cid)
    return cid


def _stop(service: DefaultService, cid: str) -> None:
    service.stop_container(cid, StopTaskOptions(timeout=0.5, force=True))


def test_checkpoint_versions_start_new_containers(
    service: DefaultService, test_images: dict[str, str], containers: list[str], snapshots: list[str]
) -> None:
    image = test_images["busybox"]
    box = _box(service, image, containers)
    sh(service, box, "echo A > /data.txt; mkdir /work; echo keep > /work/file")
    with pytest.raises(errors.FailedPrecondition, match=r"running.*stop it first"):
        service.checkpoint(box, "A")
    _stop(service, box)
    a = service.checkpoint(box, "A")
    snapshots.append(a.version_snapshot_name)
    assert (a.version_snapshot_name, a.active_snapshot_name) == (f"{box}@A", box)
    with pytest.raises(errors.AlreadyExists, match="checkpoint 'A'"):
        service.checkpoint(box, "A")

    # Work continues from version A in the same container.
    service.start_container(box)
    assert sh(service, box, "cat /data.txt") == "A\n"
    sh(service, box, "echo B > /data.txt; rm /work/file")
    _stop(service, box)
    b = service.checkpoint(box, "B")
    snapshots.append(b.version_snapshot_name)
    version_b = service.stat_snapshot(SN, b.version_snapshot_name)
    assert version_b.parent == a.version_snapshot_name
    assert version_b.labels[LABEL_CHECKPOINT_CONTAINER] == box and version_b.labels[LABEL_CHECKPOINT_VERSION] == "B"
    assert [s.name for s in service.list_checkpoints(box)] == [f"{box}@A", f"{box}@B"]

    from_a = _box(service, image, containers, snapshot_id=a.version_snapshot_name)
    from_b = _box(service, image, containers, snapshot_id=b.version_snapshot_name)
    assert sh(service, from_a, "cat /data.txt; ls /work") == "A\nfile\n"
    assert sh(service, from_b, "cat /data.txt; ls /work") == "B\n"
    info = service.get_container(from_a)
    assert info.snapshot_key == from_a and info.image == service.images.resolve(image).name
    assert service.stat_snapshot(SN, from_a).parent == a.version_snapshot_name

    # The versions stay when their containers go (they are GC roots), and go when removed.
    for cid in (from_a, from_b, box):
        service.delete_container(cid, DeleteContainerOptions(force=True))
        containers.remove(cid)
    assert {a.version_snapshot_name, b.version_snapshot_name} <= _names(service)


def test_a_version_can_be_removed_after_many_containers_used_it(
    service: DefaultService, test_images: dict[str, str], base: str, containers: list[str], snapshots: list[str]
) -> None:
    # containerd 1.6's garbage collector drops a snapshot without unlinking it from its parent. If a
    # container's snapshot were left unreferenced for a moment while it is deleted, a collection
    # landing then would leave the version with a dangling child it could never be removed with.
    version = _key("version")
    work = _key("work")
    service.prepare_snapshot(SN, work, base)
    service.commit_snapshot(SN, version, work)
    snapshots.append(version)
    image = test_images["busybox"]
    for _ in range(40):
        cid = f"t-{secrets.token_hex(5)}"
        req = CreateContainerRequest(id=cid, image_ref=image, spec=ContainerSpec(cmd=["true"]), snapshot_id=version)
        service.create_container_from_snapshot(req)
        containers.append(cid)
        service.delete_container(cid)
        containers.remove(cid)
    service.remove_snapshot(SN, version)
    snapshots.remove(version)
    assert version not in _names(service)


def _dangling_child(service: DefaultService, parent: str, key: str) -> None:
    """Make containerd 1.6's defect on purpose: a child taken by garbage collection leaves its link."""
    lease = Lease(service.client, "dangling-test").create()
    service.client.call(service.snapshots_stub.Prepare, snapshots_pb2.PrepareSnapshotRequest(
        snapshotter=SN, key=key, parent=parent), lease=lease.id, what="preparing a child only a lease holds")
    lease.delete(sync=True)  # the collector takes the child; the parent keeps the link
    assert key not in _names(service)


def test_dangling_child_link_of_a_version_is_cleared(
    service: DefaultService, test_images: dict[str, str], containers: list[str], snapshots: list[str]
) -> None:
    box = _box(service, test_images["busybox"], containers)
    _stop(service, box)
    version = service.checkpoint(box, "v1").version_snapshot_name
    snapshots.append(version)
    service.delete_container(box)
    containers.remove(box)
    _dangling_child(service, version, box)  # the container's own key: the one a lost child most likely had
    service.remove_snapshot(SN, version)
    snapshots.remove(version)
    assert version not in _names(service) and box not in _names(service)


def test_dangling_child_link_with_an_unknown_name_is_explained(service: DefaultService, base: str,
                                                               snapshots: list[str]) -> None:
    work, version, lost = _key("work"), _key("version"), _key("lost")
    service.prepare_snapshot(SN, work, base)
    service.commit_snapshot(SN, version, work)
    _dangling_child(service, version, lost)
    with pytest.raises(errors.FailedPrecondition, match="records a child snapshot of it that no longer exists"):
        service.remove_snapshot(SN, version)
    assert version in _names(service)
    # The way the hint gives, through our own API.
    service.prepare_snapshot(SN, lost, version)
    service.remove_snapshot(SN, lost)
    service.remove_snapshot(SN, version)
    assert version not in _names(service)


def test_container_on_an_active_snapshot(
    service: DefaultService, test_images: dict[str, str], base: str, containers: list[str], snapshots: list[str]
) -> None:
    key = _key("rootfs")
    service.prepare_snapshot(SN, key, base)
    snapshots.append(key)
    from ctr_magic.containerd.mounts import mount_snapshot

    directory, unmount = mount_snapshot(service, SN, key)
    try:
        with open(f"{directory}/marker", "w") as fh:
            fh.write("prepared by hand\n")
    finally:
        unmount()
    cid = _box(service, test_images["busybox"], containers, snapshot_id=key)
    assert service.get_container(cid).snapshot_key == key
    assert sh(service, cid, "cat /marker") == "prepared by hand\n"
    before = _names(service)
    with pytest.raises(errors.FailedPrecondition, match=f"root filesystem of container '{cid}'"):
        service.create_container_from_snapshot(CreateContainerRequest(
            id=f"t-{secrets.token_hex(5)}", image_ref=test_images["busybox"], snapshot_id=key))
    assert _names(service) == before
    service.delete_container(cid, DeleteContainerOptions(force=True, cleanup_snapshot=False))
    containers.remove(cid)
    assert key in _names(service)


def test_user_is_looked_up_in_the_snapshots_own_files(
    service: DefaultService, test_images: dict[str, str], base: str, containers: list[str], snapshots: list[str]
) -> None:
    # The user exists only in the active snapshot's own layer, not in the image's.
    from ctr_magic.containerd.mounts import mount_snapshot

    key = _key("users")
    service.prepare_snapshot(SN, key, base)
    snapshots.append(key)
    directory, unmount = mount_snapshot(service, SN, key)
    try:
        passwd = Path(directory, "etc", "passwd")
        passwd.parent.mkdir(exist_ok=True)
        passwd.write_text((passwd.read_text() if passwd.exists() else "") + "handmade:x:4321:4322::/:/bin/sh\n")
    finally:
        unmount()
    cid = f"t-{secrets.token_hex(5)}"
    service.create_container_from_snapshot(CreateContainerRequest(
        id=cid, image_ref=test_images["busybox"], snapshot_id=key,
        spec=ContainerSpec(cmd=["sleep", "600"], user="handmade")))
    containers.append(cid)
    service.start_container(cid)
    assert sh(service, cid, "id -u; id -g") == "4321\n4322\n"


def test_create_from_snapshot_failures_leave_nothing(
    service: DefaultService, test_images: dict[str, str], registry: str, base: str, containers: list[str]
) -> None:
    image = test_images["busybox"]
    cid = f"t-{secrets.token_hex(5)}"
    before = _names(service)
    with pytest.raises(errors.NotFound, match="ghost"):
        service.create_container_from_snapshot(CreateContainerRequest(id=cid, image_ref=image, snapshot_id="ghost"))
    with pytest.raises(errors.NotFound, match="nonexistent"):
        service.create_container_from_snapshot(CreateContainerRequest(
            id=cid, image_ref=f"{registry}/ctr-magic/nonexistent:latest", snapshot_id=base))
    with pytest.raises(errors.InvalidArgument, match="not valid"):
        service.create_container_from_snapshot(CreateContainerRequest(id="bad id", image_ref=image, snapshot_id=base))
    assert _names(service) == before
    assert cid not in {c.id for c in service.list_containers()}

    existing = _box(service, image, containers)
    with pytest.raises(errors.AlreadyExists, match=existing):
        service.create_container_from_snapshot(CreateContainerRequest(id=existing, image_ref=image, snapshot_id=base))
    assert service.get_task_info(existing).pid > 0, "the existing container is untouched"


def test_checkpoint_bad_input(service: DefaultService, test_images: dict[str, str], containers: list[str]) -> None:
    with pytest.raises(errors.NotFound, match="ghost-box"):
        service.checkpoint("ghost-box", "v1")
    cid = f"t-{secrets.token_hex(5)}"
    service.create_container(CreateContainerRequest(id=cid, image_ref=test_images["busybox"]))
    containers.append(cid)
    before = _names(service)
    result = service.checkpoint(cid, "never-started")  # a created container has files at rest too
    assert result.version_snapshot_name in _names(service) - before
    service.delete_container(cid)
    containers.remove(cid)
    service.remove_snapshot(SN, result.version_snapshot_name)
