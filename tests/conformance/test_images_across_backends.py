"""Images move between backends: export from containerd, import into Docker, run it; and the reverse."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctr_magic import capabilities, errors, features
from ctr_magic.env import EnvironmentInfo
from ctr_magic.types import (
    ContainerSpec,
    CreateContainerRequest,
    DeleteImageOptions,
    ExecTaskRequest,
    StartTaskOptions,
)

from .conftest import RUN_ID, RUN_LABEL, Backend, _connect


@pytest.fixture(scope="module")
def pair(conformance_env: EnvironmentInfo, conformance_images: dict[str, str],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Backend]]:
    made = {}
    for name in (capabilities.BACKEND_CONTAINERD, capabilities.BACKEND_DOCKER):
        made[name] = Backend(name, _connect(name, conformance_env, tmp_path_factory.mktemp(name)), conformance_images)
    try:
        yield made
    finally:
        for be in made.values():
            for cid in be.made:
                be.remove(cid)
            be.service.close()


def _marked_image(be: Backend, marker: str) -> str:
    """An image made on *be*: busybox plus /marker, by commit."""
    cid = be.run()
    be.service.exec_task(cid, ExecTaskRequest(args=["sh", "-c", f"echo {marker} > /marker"]))
    registry = be.images["busybox"].split("/", 1)[0]
    ref = f"{registry}/ctr-magic-test/moved-{be.name}-{RUN_ID}:v1"
    features.require(be.service, features.Committing).commit_container(cid, ref, replace=True)
    return ref


def _run_cat(be: Backend, ref: str) -> str:
    cid = be.new_id()
    be.service.create_container(CreateContainerRequest(id=cid, image_ref=ref, labels={RUN_LABEL: RUN_ID},
                                                       spec=ContainerSpec(cmd=["sleep", "3600"])))
    be.service.start_container(cid, StartTaskOptions())
    out = io.BytesIO()
    assert be.service.exec_task(cid, ExecTaskRequest(args=["cat", "/marker"], stdout=out)).exit_code == 0
    return out.getvalue().decode()


def _drop(be: Backend, ref: str) -> None:
    with contextlib.suppress(errors.NotFound):
        be.service.delete_image(ref, DeleteImageOptions(synchronous=True))


@pytest.mark.parametrize("source,target", [("containerd", "docker"), ("docker", "containerd")])
def test_an_exported_image_runs_on_the_other_backend(pair: dict[str, Any], source: str, target: str,
                                                    tmp_path: Path) -> None:
    src, dst = pair[source], pair[target]
    marker = f"made-on-{source}"
    ref = _marked_image(src, marker)
    archive = tmp_path / "moved.tar"
    try:
        features.require(src.service, features.ImageArchives).export_image([ref], str(archive))
        _drop(dst, ref)
        imported = features.require(dst.service, features.ImageArchives).import_image(str(archive))
        assert ref in {i.name for i in imported}
        assert _run_cat(dst, ref) == marker + "\n"
    finally:
        for be in (src, dst):
            for cid in be.made:
                be.remove(cid)
            be.made.clear()
            _drop(be, ref)


def test_an_oci_layout_without_manifest_json_loads_into_docker(pair: dict[str, Any], tmp_path: Path) -> None:
    import tarfile

    src, dst = pair["containerd"], pair["docker"]
    ref = _marked_image(src, "oci-only")
    full, oci_only = tmp_path / "full.tar", tmp_path / "oci.tar"
    try:
        features.require(src.service, features.ImageArchives).export_image([ref], str(full))
        with tarfile.open(full) as source, tarfile.open(oci_only, "w") as out:
            for member in source:
                if member.name.lstrip("./") not in ("manifest.json", "repositories"):
                    out.addfile(member, source.extractfile(member) if member.isfile() else None)
        _drop(dst, ref)
        imported = features.require(dst.service, features.ImageArchives).import_image(str(oci_only))
        assert ref in {i.name for i in imported}
        assert _run_cat(dst, ref) == "oci-only\n"
    finally:
        for be in (src, dst):
            for cid in be.made:
                be.remove(cid)
            be.made.clear()
            _drop(be, ref)
