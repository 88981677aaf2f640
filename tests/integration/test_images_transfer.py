"""Push, export and import — each checked with the other tool (skopeo, ctr, docker)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from datetime import date
from pathlib import Path

import images_support
import pytest
from images_support import assert_nothing_left, ctr_cmd, snapshots, wipe_namespace
from registry_servers import skopeo_inspect_raw

from ctr_magic import errors, ocilayout, testimages
from ctr_magic.constants import MEDIA_DOCKER_MANIFEST, MEDIA_OCI_MANIFEST
from ctr_magic.containerd.client import ContainerdClient
from ctr_magic.containerd.service import DefaultService
from ctr_magic.env import Environment, EnvironmentInfo, find_binary
from ctr_magic.types import DeleteImageOptions, LayerProgress

images_namespace = images_support.images_namespace
svc = images_support.svc


@pytest.fixture
def other_namespace(environment: EnvironmentInfo, images_namespace: str, unique_id: str) -> str:
    name = f"{images_namespace}-{unique_id}"
    yield name
    client = ContainerdClient(environment.containerd_socket, name)
    try:
        wipe_namespace(client)
    finally:
        client.close()


# --------------------------------------------------------------------------- push


def test_push_then_skopeo_sees_it(svc: DefaultService, test_images: dict[str, str], registry: str,
                                  unique_id: str) -> None:
    ref = test_images["config"]
    info = svc.pull_image(ref)
    dest = f"{registry}/ctr-magic/pushed-{unique_id}:v1"
    events: list[LayerProgress] = []
    digest = svc.push_image(ref, dest=dest, progress=events.append)
    assert digest == info.id
    raw = skopeo_inspect_raw(dest)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    pushed = json.loads(raw)
    resolved = svc.images.resolve(ref)
    assert [layer["digest"] for layer in pushed["layers"]] == [layer["digest"] for layer in resolved.layers]
    # Every blob was there already (same registry, other repository?) or uploaded; a second push skips all.
    again: list[LayerProgress] = []
    assert svc.push_image(ref, dest=dest, progress=again.append) == digest
    blob_states = {e.digest: e.state for e in again if e.digest != digest and e.state in ("exists", "done")}
    assert set(blob_states.values()) == {"exists"}
    assert set(blob_states) == {resolved.config_digest, *(layer["digest"] for layer in resolved.layers)}
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))


def test_push_of_a_partly_stored_index_pushes_the_host_manifest(svc: DefaultService, test_images: dict[str, str],
                                                                 registry: str, unique_id: str) -> None:
    ref = test_images["multi"]
    svc.pull_image(ref)
    dest = f"{registry}/ctr-magic/pushed-multi-{unique_id}:latest"
    digest = svc.push_image(ref, dest=dest)
    assert digest == svc.images.resolve(ref).manifest_digest
    raw = skopeo_inspect_raw(dest)
    assert json.loads(raw)["mediaType"] == MEDIA_OCI_MANIFEST
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))


def test_push_unknown_image(svc: DefaultService, registry: str) -> None:
    with pytest.raises(errors.NotFound, match="never-pulled"):
        svc.push_image("ctr-magic/never-pulled:1", dest=f"{registry}/ctr-magic/x:1")


def test_tag_image(svc: DefaultService, test_images: dict[str, str]) -> None:
    ref = test_images["busybox"]
    info = svc.pull_image(ref)
    tagged = svc.tag_image(ref, "localhost/ctr-magic/retagged:v2")
    assert (tagged.name, tagged.id) == ("localhost/ctr-magic/retagged:v2", info.id)
    svc.delete_image(ref)
    assert svc.get_image("localhost/ctr-magic/retagged:v2").id == info.id  # content kept by the other name
    svc.delete_image("localhost/ctr-magic/retagged:v2", DeleteImageOptions(synchronous=True))
    with pytest.raises(errors.InvalidArgument):
        svc.tag_image(ref, "")


# --------------------------------------------------------------------------- export


def test_export_is_accepted_by_ctr_import(svc: DefaultService, test_images: dict[str, str], tmp_path: Path,
                                          environment: EnvironmentInfo, other_namespace: str) -> None:
    refs = [test_images["busybox"], test_images["config"]]
    for ref in refs:
        svc.pull_image(ref)
    archive = tmp_path / "images.tar"
    svc.export_image(refs, str(archive))
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"oci-layout", "index.json", "manifest.json"} <= names
    ctr_cmd(environment, other_namespace, "images", "import", str(archive))
    listed = ctr_cmd(environment, other_namespace, "images", "ls", "-q").stdout.split()
    assert set(refs) <= set(listed)
    client = ContainerdClient(environment.containerd_socket, other_namespace)
    try:
        from ctr_magic.containerd.imagestore import ImageStore

        for ref in refs:
            assert ImageStore(client).resolve(ref).top_chain_id in snapshots(client)  # ctr unpacked it
    finally:
        client.close()


def test_export_to_a_stream_and_import_back(svc: DefaultService, test_images: dict[str, str],
                                            environment: EnvironmentInfo, other_namespace: str) -> None:
    ref = test_images["layers"]
    info = svc.pull_image(ref)
    buffer = io.BytesIO()
    svc.export_image([ref], buffer)
    buffer.seek(0)
    other = DefaultService.connect(environment.containerd_socket, other_namespace)
    try:
        imported = other.import_image(buffer)
        assert [(i.name, i.id) for i in imported] == [(ref, info.id)]
        assert other.images.resolve(ref).top_chain_id in snapshots(other.client)
        assert_nothing_left(other)
    finally:
        other.close()


def test_export_missing_content_is_refused(svc: DefaultService, tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound):
        svc.export_image(["ctr-magic/never-pulled:1"], str(tmp_path / "x.tar"))
    assert not (tmp_path / "x.tar").exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.docker
def test_export_is_accepted_by_docker_load(svc: DefaultService, test_images: dict[str, str], tmp_path: Path,
                                           environment: EnvironmentInfo) -> None:
    info = Environment(environment.base_dir).up(with_docker=True)
    assert info.dockerd_socket
    ref = test_images["busybox"]
    svc.pull_image(ref)
    archive = tmp_path / "for-docker.tar"
    svc.export_image([ref], str(archive))
    docker = [find_binary("docker"), "-H", f"unix://{info.dockerd_socket}"]
    loaded = subprocess.run([*docker, "load", "-i", str(archive)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert loaded.returncode == 0, loaded.stderr
    assert ref in loaded.stdout
    subprocess.run([*docker, "rmi", ref], capture_output=True, timeout=60, check=True)


# --------------------------------------------------------------------------- import


def _docker_save_tar(layout: ocilayout.OCILayout, image: ocilayout.BuiltImage, repo_tag: str) -> bytes:
    """A tar in the format of `docker save` (20.10): layer.tar per layer, <config>.json, manifest.json."""
    manifest = layout.read_json(image.digest)
    config_hex = manifest["config"]["digest"].split(":")[1]  # type: ignore[index]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        layer_paths = []
        for layer in manifest["layers"]:  # type: ignore[union-attr]
            data = gzip.decompress(layout.read_blob(layer["digest"]))
            layer_id = hashlib.sha256(data).hexdigest()
            add(f"{layer_id}/VERSION", b"1.0")
            add(f"{layer_id}/json", json.dumps({"id": layer_id}).encode())
            add(f"{layer_id}/layer.tar", data)
            layer_paths.append(f"{layer_id}/layer.tar")
        add(f"{config_hex}.json", layout.read_blob(manifest["config"]["digest"]))  # type: ignore[index]
        add("manifest.json", json.dumps([{"Config": f"{config_hex}.json", "RepoTags": [repo_tag],
                                          "Layers": layer_paths}]).encode())
        repo, tag = repo_tag.split(":")
        add("repositories", json.dumps({repo: {tag: layer_paths[-1][:64]}}).encode())
    return out.getvalue()


def test_import_docker_save_tar(svc: DefaultService, tmp_path: Path, environment: EnvironmentInfo,
                                images_namespace: str, unique_id: str) -> None:
    layout = ocilayout.OCILayout(tmp_path / "layout")
    image = testimages.busybox_with_config(layout, tag="v1")
    archive = tmp_path / "saved.tar"
    archive.write_bytes(_docker_save_tar(layout, image, "ctr-magic/saved:v1"))
    imported = svc.import_image(str(archive))
    assert [i.name for i in imported] == ["docker.io/ctr-magic/saved:v1"]
    assert imported[0].media_type == MEDIA_DOCKER_MANIFEST
    resolved = svc.images.resolve("docker.io/ctr-magic/saved:v1")
    assert resolved.runtime_config["Env"][-1] == "FOO=bar"
    assert resolved.top_chain_id in snapshots(svc.client)
    assert_nothing_left(svc)
    res = ctr_cmd(environment, images_namespace, "run", "--rm", "docker.io/ctr-magic/saved:v1", unique_id)
    assert res.stdout.strip() == "hello from config"
    svc.delete_image("docker.io/ctr-magic/saved:v1", DeleteImageOptions(synchronous=True))


def _tar_dir(directory: Path) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path in sorted(directory.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(directory)), recursive=False)
    return out.getvalue()


def test_import_oci_layout_tar(svc: DefaultService, tmp_path: Path) -> None:
    layout = ocilayout.OCILayout(tmp_path / "layout")
    image = testimages.busybox_multi_layer(layout, 3, tag="v3")
    data = _tar_dir(layout.path)
    named = svc.import_image(io.BytesIO(data), name="localhost/ctr-magic/from-layout")
    assert [(i.name, i.id) for i in named] == [("localhost/ctr-magic/from-layout:v3", image.digest)]
    unnamed = svc.import_image(io.BytesIO(data))
    assert [i.name for i in unnamed] == [f"import-{date.today().isoformat()}:v3"]
    assert svc.images.resolve("localhost/ctr-magic/from-layout:v3").top_chain_id in snapshots(svc.client)
    for info in named + unnamed:
        svc.delete_image(info.name, DeleteImageOptions(synchronous=True))


def test_import_what_ctr_exported(svc: DefaultService, test_images: dict[str, str], tmp_path: Path,
                                  environment: EnvironmentInfo, other_namespace: str) -> None:
    ref = test_images["multi"]
    ctr_cmd(environment, other_namespace, "images", "pull", "--plain-http", ref)
    archive = tmp_path / "from-ctr.tar"
    ctr_cmd(environment, other_namespace, "images", "export", str(archive), ref)
    imported = svc.import_image(str(archive))
    assert [i.name for i in imported] == [ref]
    assert svc.images.resolve(ref).top_chain_id in snapshots(svc.client)
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))


def test_import_rejects_garbage(svc: DefaultService, tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument, match="not a readable tar"):
        svc.import_image(io.BytesIO(b"this is not a tar archive at all" * 100))
    empty = io.BytesIO()
    with tarfile.open(fileobj=empty, mode="w"):
        pass
    empty.seek(0)
    with pytest.raises(errors.InvalidArgument, match=r"neither oci-layout nor manifest\.json"):
        svc.import_image(empty)
    with pytest.raises(errors.NotFound, match="does not exist"):
        svc.import_image(str(tmp_path / "missing.tar"))
    assert_nothing_left(svc)
