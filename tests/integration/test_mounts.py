"""Mounting snapshots on the host: a container's files read (and written) from Python, read-only
views, idempotent unmount, and nothing left mounted or on disk after failures."""

from __future__ import annotations

import errno
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctr_magic import errors, mount_container_snapshot, mount_snapshot
from ctr_magic.constants import VIEW_SNAPSHOT_PREFIX
from ctr_magic.containerd.service import DefaultService
from ctr_magic.hostmount import mount_points
from ctr_magic.types import ContainerSpec, CreateContainerRequest, DeleteContainerOptions, ExecTaskRequest, MountInfo

SN = "overlayfs"


@pytest.fixture
def box(service: DefaultService, test_images: dict[str, str]) -> Iterator[str]:
    """A running busybox container that wrote /note.txt."""
    cid = f"t-{secrets.token_hex(5)}"
    service.create_container(CreateContainerRequest(id=cid, image_ref=test_images["busybox"],
                                                    spec=ContainerSpec(cmd=["sleep", "600"])))
    try:
        service.start_container(cid)
        err = io.BytesIO()
        res = service.exec_task(cid, ExecTaskRequest(args=["sh", "-c", "echo written inside > /note.txt"],
                                                     stderr=err))
        assert res.exit_code == 0, err.getvalue()
        yield cid
    finally:
        service.delete_container(cid, DeleteContainerOptions(force=True))


def _mounted_under(directory: Path) -> list[str]:
    return [p for p in mount_points() if p == str(directory) or p.startswith(f"{directory}/")]


def _views(service: DefaultService) -> list[str]:
    return [s.name for s in service.list_snapshots(SN, usage=False) if s.name.startswith(VIEW_SNAPSHOT_PREFIX)]


def test_mount_container_snapshot_reads_what_the_container_wrote(
    service: DefaultService, box: str, tmp_path: Path
) -> None:
    mounted = mount_container_snapshot(service, box, parent_dir=str(tmp_path))
    try:
        assert mounted.info.id == box and mounted.info.snapshot_key
        assert Path(mounted.dir).parent == tmp_path
        assert mounted.dir in mount_points()
        assert (Path(mounted.dir) / "note.txt").read_text() == "written inside\n"
        assert (Path(mounted.dir) / "bin" / "busybox").exists(), "the image's layers are there too"
        # Writable: a file written from the host shows up in the running container.
        (Path(mounted.dir) / "from-host.txt").write_text("hello from the host\n")
    finally:
        mounted.unmount()
    out = io.BytesIO()
    service.exec_task(box, ExecTaskRequest(args=["cat", "/from-host.txt"], stdout=out))
    assert out.getvalue() == b"hello from the host\n"
    assert _mounted_under(tmp_path) == [] and list(tmp_path.iterdir()) == []
    mounted.unmount()  # idempotent
    assert _mounted_under(tmp_path) == []


def test_read_only_mount_of_a_running_container(service: DefaultService, box: str, tmp_path: Path) -> None:
    with mount_container_snapshot(service, box, read_only=True, parent_dir=str(tmp_path)) as mounted:
        assert (Path(mounted.dir) / "note.txt").read_text() == "written inside\n"
        with pytest.raises(OSError) as info:
            (Path(mounted.dir) / "nope").write_text("x")
        assert info.value.errno == errno.EROFS
    assert _mounted_under(tmp_path) == [] and list(tmp_path.iterdir()) == []


def test_committed_snapshot_is_mounted_through_a_view(
    service: DefaultService, test_images: dict[str, str], tmp_path: Path
) -> None:
    top = service.images.resolve(test_images["busybox"]).top_chain_id
    before = _views(service)
    directory, unmount = mount_snapshot(service, SN, top, parent_dir=str(tmp_path))
    try:
        assert (Path(directory) / "etc" / "passwd").read_text().startswith("root:")
        assert len(_views(service)) == len(before) + 1
        with pytest.raises(OSError):
            (Path(directory) / "x").write_text("x")
    finally:
        unmount()
    unmount()
    assert _views(service) == before, "the temporary view is removed"
    assert _mounted_under(tmp_path) == [] and list(tmp_path.iterdir()) == []


def test_unknown_key_leaves_nothing(service: DefaultService, tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="ghost"):
        mount_snapshot(service, SN, "ghost", parent_dir=str(tmp_path))
    with pytest.raises(errors.NotFound, match="ghost-box"):
        mount_container_snapshot(service, "ghost-box", parent_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("snapshotter", "key", "match"), [("", "k", "snapshotter"), (SN, "", "key")])
def test_missing_arguments(service: DefaultService, snapshotter: str, key: str, match: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=match):
        mount_snapshot(service, snapshotter, key)


class BrokenMounts:
    """The real service, except that the mounts it hands out cannot be mounted.

    A real containerd never returns such mounts; this provokes a mount(2) failure after the
    snapshot (and for committed snapshots, a View) was set up, to check the clean-up path.
    """

    def __init__(self, real: DefaultService) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    @staticmethod
    def _break(mounts: list[MountInfo]) -> list[MountInfo]:
        return [MountInfo(type="overlay", source="overlay", options=["lowerdir=/nonexistent/a:/nonexistent/b"])
                for _ in mounts]

    def snapshot_mounts(self, snapshotter: str, key: str) -> list[MountInfo]:
        return self._break(self.real.snapshot_mounts(snapshotter, key))

    def view_snapshot(self, *args: Any, **kwargs: Any) -> list[MountInfo]:
        return self._break(self.real.view_snapshot(*args, **kwargs))


def test_failed_mount_leaves_nothing(
    service: DefaultService, box: str, test_images: dict[str, str], tmp_path: Path
) -> None:
    broken = BrokenMounts(service)
    before = _views(service)
    with pytest.raises(errors.CtrError, match="mounting snapshot"):
        mount_container_snapshot(broken, box, parent_dir=str(tmp_path))
    top = service.images.resolve(test_images["busybox"]).top_chain_id
    with pytest.raises(errors.CtrError, match="mounting snapshot"):
        mount_snapshot(broken, SN, top, parent_dir=str(tmp_path))
    assert _views(service) == before, "the view made for the failed mount is removed"
    assert _mounted_under(tmp_path) == [] and list(tmp_path.iterdir()) == []


def test_not_root_is_a_clear_error(service: DefaultService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The suite runs as root; pretend otherwise to see the message a normal user gets.
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(errors.FailedPrecondition, match=r"needs root.*uid 1000"):
        mount_snapshot(service, SN, "anything", parent_dir=str(tmp_path))
    with pytest.raises(errors.FailedPrecondition, match="needs root"):
        mount_container_snapshot(service, "anything", parent_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_overlay_data_longer_than_a_page(tmp_path: Path) -> None:
    """60 layers with long paths: the mount data exceeds the kernel's page limit and is shortened."""
    from ctr_magic.hostmount import mount_one, unmount

    deep = tmp_path / ("d" * 60)
    layers = []
    for i in range(60):
        layer = deep / f"layer-{i:02d}-{'x' * 40}"
        layer.mkdir(parents=True)
        (layer / f"file-{i}").write_text(str(i))
        layers.append(str(layer))
    (deep / "layer-00-" f"{'x' * 40}" / "shadowed").write_text("bottom")
    (deep / "layer-59-" f"{'x' * 40}" / "shadowed").write_text("top")
    options = [f"lowerdir={':'.join(reversed(layers))}"]  # overlayfs lists the top layer first
    assert len(options[0]) > 4096
    target = tmp_path / "mnt"
    target.mkdir()
    mount_one(MountInfo(type="overlay", source="overlay", options=options), str(target))
    try:
        assert (target / "file-0").read_text() == "0" and (target / "file-59").read_text() == "59"
        assert (target / "shadowed").read_text() == "top"
    finally:
        unmount(str(target))
    assert str(target) not in mount_points()


def test_option_parsing_and_read_only_conversion() -> None:
    from ctr_magic.containerd.mounts import read_only_mounts
    from ctr_magic.hostmount import MS_BIND, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, parse_options

    flags, propagation, data = parse_options(["ro", "rbind", "nosuid", "rprivate", "index=off", "rw", "ro"])
    assert flags == MS_RDONLY | MS_BIND | MS_REC | MS_NOSUID
    assert propagation == MS_PRIVATE | MS_REC and data == ["index=off"]
    overlay = MountInfo(type="overlay", source="overlay",
                        options=["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2"])
    assert read_only_mounts([overlay]) == [
        MountInfo(type="overlay", source="overlay", options=["ro", "index=off", "lowerdir=/u:/l1:/l2"])]
    lone = MountInfo(type="overlay", source="overlay", options=["workdir=/w", "upperdir=/u"])
    assert read_only_mounts([lone]) == [MountInfo(type="bind", source="/u", options=["ro", "rbind"])]
    bind = MountInfo(type="bind", source="/s", options=["rw", "rbind"])
    assert read_only_mounts([bind]) == [MountInfo(type="bind", source="/s", options=["ro", "rbind"])]
