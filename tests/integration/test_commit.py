"""Committing a container to an image: the image runs, holds the change, carries GC labels like a
pulled image, and ctr can push, pull, export and import it."""

from __future__ import annotations

import contextlib
import io
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctr_magic import errors
from ctr_magic.constants import LABEL_GC_REF_CONTENT, LABEL_UNCOMPRESSED
from ctr_magic.containerd.leases import list_leases
from ctr_magic.containerd.service import DefaultService
from ctr_magic.types import (
    ContainerSpec,
    CreateContainerRequest,
    DeleteContainerOptions,
    DeleteImageOptions,
    ExecTaskRequest,
    StartTaskOptions,
    StopTaskOptions,
)


@pytest.fixture
def made(service: DefaultService) -> Iterator[dict[str, list[str]]]:
    """Containers and images to delete at the end, whatever happens."""
    things: dict[str, list[str]] = {"containers": [], "images": []}
    yield things
    for cid in reversed(things["containers"]):
        with contextlib.suppress(errors.NotFound):
            service.delete_container(cid, DeleteContainerOptions(force=True))
    for ref in things["images"]:
        with contextlib.suppress(errors.NotFound):
            service.delete_image(ref, DeleteImageOptions(synchronous=True))


def _box(service: DefaultService, image: str, made: dict[str, list[str]], *, start: bool = True,
         cmd: tuple[str, ...] = ("sleep", "600")) -> str:
    cid = f"t-{secrets.token_hex(5)}"
    service.create_container(CreateContainerRequest(id=cid, image_ref=image, spec=ContainerSpec(cmd=list(cmd))))
    made["containers"].append(cid)
    if start:
        service.start_container(cid)
    return cid


def sh(service: DefaultService, cid: str, script: str) -> str:
    out, err = io.BytesIO(), io.BytesIO()
    res = service.exec_task(cid, ExecTaskRequest(args=["sh", "-c", script], stdout=out, stderr=err))
    assert res.exit_code == 0, err.getvalue()
    return out.getvalue().decode()


def _commit_leases(service: DefaultService) -> list[str]:
    return [lease.id for lease in list_leases(service.client) if lease.id.startswith("ctr-magic-commit")]


def test_commit_running_container_to_image(
    service: DefaultService, test_images: dict[str, str], registry: str, made: dict[str, list[str]], ctr
) -> None:
    base_ref = test_images["busybox"]
    box = _box(service, base_ref, made)
    sh(service, box, "echo committed > /committed.txt; rm /etc/group; mkdir -p /opt/app && echo x > /opt/app/x")
    name = f"{registry}/ctr-magic-test/commit-{secrets.token_hex(4)}:v1"
    info = service.commit_container(box, name, cmd=["cat", "/committed.txt"], env=["COMMIT_VAR=yes"],
                                    message="saved by a test")
    made["images"].append(name)
    assert info.name == name and info.id.startswith("sha256:") and info.platforms
    assert str(service.get_task_info(box).status) == "running", "the task was paused only for the diff"
    assert _commit_leases(service) == []

    base = service.images.resolve(base_ref)
    image = service.images.resolve(name)
    assert image.manifest["mediaType"] == base.manifest["mediaType"]
    assert image.layers[:-1] == base.layers and len(image.layers) == len(base.layers) + 1
    assert image.diff_ids[:-1] == base.diff_ids
    runtime = image.runtime_config
    assert runtime["Cmd"] == ["cat", "/committed.txt"]
    assert "COMMIT_VAR=yes" in runtime["Env"] and any(e.startswith("PATH=") for e in runtime["Env"])
    assert image.config["history"][-1]["comment"] == "saved by a test"
    assert image.config["history"][-1]["created_by"] == f"ctr-magic commit {box}"

    # GC labels as containerd's client sets them on pulled images.
    layer = image.layers[-1]
    manifest_labels = service.content.info(image.manifest_digest).labels
    assert manifest_labels[f"{LABEL_GC_REF_CONTENT}.config"] == image.config_digest
    assert manifest_labels[f"{LABEL_GC_REF_CONTENT}.l.{len(image.layers) - 1}"] == layer["digest"]
    assert service.content.info(layer["digest"]).labels[LABEL_UNCOMPRESSED] == image.diff_ids[-1]
    config_labels = service.content.info(image.config_digest).labels
    assert config_labels["containerd.io/gc.ref.snapshot.overlayfs"] == image.top_chain_id
    assert service.stat_snapshot("overlayfs", image.top_chain_id).kind == "committed", "unpacked at once"

    # A new container from the image sees the change and runs the new Cmd.
    runner = _box(service, name, made, start=False, cmd=())
    log_path = Path(service.log_path_for(runner))
    service.start_container(runner, StartTaskOptions(log_path=str(log_path)))
    assert service.wait_task(runner, timeout=30) == 0
    assert log_path.read_text() == "committed\n"
    again = _box(service, name, made)
    assert sh(service, again, "echo $COMMIT_VAR; test -e /etc/group || echo group-gone; cat /opt/app/x") == \
        "yes\ngroup-gone\nx\n"

    # ctr runs it; ctr and ctr-magic push it; another namespace pulls both with ctr and runs them.
    assert ctr("run", "--rm", name, f"t-ctr-{secrets.token_hex(4)}").stdout == "committed\n"
    ctr("images", "push", "--plain-http", name)
    ours = name.replace(":v1", ":pushed-by-ctr-magic")
    assert service.push_image(name, dest=ours) == info.id
    other = f"{service.namespace}-pulled"
    try:
        for ref in (name, ours):
            ctr("images", "pull", "--plain-http", ref, namespace=other)
            assert ctr("run", "--rm", ref, f"t-ctr-{secrets.token_hex(4)}", namespace=other).stdout == \
                "committed\n"
            ctr("images", "rm", "--sync", ref, namespace=other)
    finally:
        ctr("images", "rm", "--sync", name, ours, namespace=other, check=False)
        removed = ctr("namespaces", "rm", other, check=False)
    assert removed.returncode == 0, f"namespace {other} not empty: {removed.stderr}"


def test_commit_exports_and_imports(
    service: DefaultService, test_images: dict[str, str], made: dict[str, list[str]], ctr, tmp_path: Path
) -> None:
    box = _box(service, test_images["busybox"], made, start=False)  # never started: files at rest
    name = f"localhost/ctr-magic-test/export-{secrets.token_hex(4)}:v1"
    service.commit_container(box, name, cmd=["echo", "from the export"])
    made["images"].append(name)
    other = f"{service.namespace}-imported"
    try:
        for exporter in ("ctr", "ctr-magic"):
            archive = tmp_path / f"{exporter}.tar"
            if exporter == "ctr":
                ctr("images", "export", str(archive), name)
            else:
                service.export_image([name], str(archive))
            ctr("images", "import", str(archive), namespace=other)
            assert ctr("run", "--rm", name, f"t-ctr-{secrets.token_hex(4)}", namespace=other).stdout == \
                "from the export\n", exporter
            ctr("images", "rm", "--sync", name, namespace=other)
    finally:
        ctr("images", "rm", "--sync", name, namespace=other, check=False)
        removed = ctr("namespaces", "rm", other, check=False)
    assert removed.returncode == 0, f"namespace {other} not empty: {removed.stderr}"


def test_commit_after_checkpoints_keeps_every_change(
    service: DefaultService, test_images: dict[str, str], made: dict[str, list[str]]
) -> None:
    # The layer is the difference to the image, not to the container's last checkpoint.
    box = _box(service, test_images["busybox"], made)
    sh(service, box, "echo one > /one.txt")
    service.stop_container(box, StopTaskOptions(timeout=0.5, force=True))
    version = ""
    try:
        version = service.checkpoint(box, "v1").version_snapshot_name
        service.start_container(box)
        sh(service, box, "echo two > /two.txt")
        name = f"localhost/ctr-magic-test/checkpointed-{secrets.token_hex(4)}:v1"
        service.commit_container(box, name)
        made["images"].append(name)
        again = _box(service, name, made)
        assert sh(service, again, "cat /one.txt /two.txt") == "one\ntwo\n"
    finally:
        service.delete_container(box, DeleteContainerOptions(force=True))
        made["containers"].remove(box)
        if version:
            service.remove_snapshot("overlayfs", version)


def test_commit_twice_under_one_name(
    service: DefaultService, test_images: dict[str, str], made: dict[str, list[str]]
) -> None:
    box = _box(service, test_images["busybox"], made)
    name = f"localhost/ctr-magic-test/twice-{secrets.token_hex(4)}:v1"
    first = service.commit_container(box, name)
    made["images"].append(name)
    sh(service, box, "echo more > /more.txt")
    with pytest.raises(errors.AlreadyExists, match="already exists; nothing was committed"):
        service.commit_container(box, name)
    assert service.get_image(name).id == first.id
    moved = service.commit_container(box, name, replace=True, message="second")
    assert moved.id != first.id
    assert service.images.resolve(name).config["history"][-1]["comment"] == "second"
    assert _commit_leases(service) == []


def test_commit_bad_input(service: DefaultService, test_images: dict[str, str], made: dict[str, list[str]]) -> None:
    before = {i.name for i in service.list_images()}
    with pytest.raises(errors.InvalidArgument, match="container_id, image_ref are required"):
        service.commit_container("", "")
    with pytest.raises(errors.InvalidArgument, match="image_ref is required"):
        service.commit_container("box", "")
    with pytest.raises(errors.NotFound, match="ghost-box"):
        service.commit_container("ghost-box", "localhost/x:1")
    box = _box(service, test_images["busybox"], made, start=False)
    with pytest.raises(errors.InvalidArgument, match="cmd must be a list"):
        service.commit_container(box, "localhost/x:1", cmd="echo hi")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument, match="KEY=VALUE"):
        service.commit_container(box, "localhost/x:1", env=["NOEQUALS"])
    assert {i.name for i in service.list_images()} == before
    assert _commit_leases(service) == []
