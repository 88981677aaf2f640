"""The media-type matrix (OCI and Docker, manifests and indexes), platform choice and odd layers."""

from __future__ import annotations

import hashlib
import json

import httpx
import images_support
import pytest
from images_support import assert_nothing_left, content_labels, ctr_cmd, snapshots
from registry_servers import skopeo_copy, skopeo_inspect_raw

from ctr_magic import errors, ocilayout, testimages
from ctr_magic.constants import (
    MEDIA_DOCKER_CONFIG,
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_DOCKER_MANIFEST_LIST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
)
from ctr_magic.containerd.service import DefaultService
from ctr_magic.env import EnvironmentInfo
from ctr_magic.types import DeleteImageOptions, PullImageOptions

images_namespace = images_support.images_namespace
svc = images_support.svc


def _push_docker_manifest_list(registry: str, repo: str, children: list[tuple[str, dict[str, str]]]) -> str:
    """Write a Docker manifest list by hand over manifests already in *repo* (tag -> platform)."""
    manifests = []
    for tag, platform in children:
        raw = skopeo_inspect_raw(f"{registry}/{repo}:{tag}")
        assert json.loads(raw)["mediaType"] == MEDIA_DOCKER_MANIFEST
        manifests.append({"mediaType": MEDIA_DOCKER_MANIFEST, "size": len(raw),
                          "digest": "sha256:" + hashlib.sha256(raw).hexdigest(), "platform": platform})
    body = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_DOCKER_MANIFEST_LIST, "manifests": manifests}).encode()
    with httpx.Client(trust_env=False) as client:
        response = client.put(f"http://{registry}/v2/{repo}/manifests/latest", content=body,
                              headers={"Content-Type": MEDIA_DOCKER_MANIFEST_LIST})
    assert response.status_code == 201, response.text
    return "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.fixture(scope="module")
def formats(registry: str, test_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """name -> reference: OCI manifest, OCI index, Docker schema 2, Docker manifest list, empty layer."""
    layout = ocilayout.OCILayout(tmp_path_factory.mktemp("format-images"))
    busybox = testimages.busybox_single_layer(layout, tag="busybox")
    multi = testimages.multi_platform_index(layout, tag="multi")
    empty = layout.add_layer({}, created_by="ctr-magic: empty layer")
    with_empty = layout.tag(layout.add_image([testimages.busybox_layer(layout), empty]), "empty")
    skopeo_copy(busybox.oci_ref, f"docker://{registry}/ctr-magic/v2s2:latest", "--format", "v2s2")
    for arch, variant in (("amd64", ""), ("arm64", "v8")):
        extra = ["--override-arch", arch] + (["--override-variant", variant] if variant else [])
        skopeo_copy(multi.oci_ref, f"docker://{registry}/ctr-magic/mlist:{arch}", "--format", "v2s2",
                    *extra)  # fmt: skip
    platforms = [("amd64", {"os": "linux", "architecture": "amd64"}),
                 ("arm64", {"os": "linux", "architecture": "arm64", "variant": "v8"})]
    _push_docker_manifest_list(registry, "ctr-magic/mlist", platforms)
    testimages.publish(with_empty.layout, registry, "ctr-magic/empty-layer", "latest", src_tag="empty")
    return {
        "oci-manifest": test_images["busybox"],
        "oci-index": test_images["multi"],
        "docker-v2s2": f"{registry}/ctr-magic/v2s2:latest",
        "docker-list": f"{registry}/ctr-magic/mlist:latest",
        "empty-layer": f"{registry}/ctr-magic/empty-layer:latest",
    }


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("oci-manifest", MEDIA_OCI_MANIFEST), ("oci-index", MEDIA_OCI_INDEX), ("docker-v2s2", MEDIA_DOCKER_MANIFEST),
     ("docker-list", MEDIA_DOCKER_MANIFEST_LIST), ("empty-layer", MEDIA_OCI_MANIFEST)],
)
def test_media_types_pull_unpack_and_run(svc: DefaultService, formats: dict[str, str], name: str, media_type: str,
                                         environment: EnvironmentInfo, images_namespace: str,
                                         unique_id: str) -> None:
    ref = formats[name]
    info = svc.pull_image(ref)
    assert info.media_type == media_type
    resolved = svc.images.resolve(ref)
    assert resolved.top_chain_id in snapshots(svc.client)
    if name.startswith("docker"):
        assert resolved.manifest["config"]["mediaType"] == MEDIA_DOCKER_CONFIG
        assert {layer["mediaType"] for layer in resolved.layers} == {MEDIA_DOCKER_LAYER_GZIP}
    if name in ("docker-v2s2", "docker-list", "empty-layer"):  # the OCI ones run in test_images_pull
        res = ctr_cmd(environment, images_namespace, "run", "--rm", ref, unique_id, "/bin/sh", "-c", "echo ok")
        assert res.stdout.strip() == "ok"
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))
    assert resolved.top_chain_id not in snapshots(svc.client)


@pytest.mark.parametrize("name", ["oci-index", "docker-list"])
def test_platform_choice(svc: DefaultService, formats: dict[str, str], name: str) -> None:
    ref = formats[name]
    info = svc.pull_image(ref, PullImageOptions(platform="linux/arm64"))
    assert set(info.platforms) >= {"linux/amd64", "linux/arm64/v8"}
    from ctr_magic.platforms import parse_platform

    resolved = svc.images.resolve(ref, parse_platform("linux/arm64"))
    assert resolved.config["architecture"] == "arm64"
    assert resolved.runtime_config["Labels"]["platform"] == "arm64"
    labels = content_labels(svc.client, resolved.config_digest)
    assert labels["containerd.io/gc.ref.snapshot.overlayfs"] == resolved.top_chain_id
    assert resolved.top_chain_id in snapshots(svc.client)
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))


def test_platform_not_in_index(svc: DefaultService, formats: dict[str, str]) -> None:
    ref = formats["oci-index"]
    with pytest.raises(errors.NotFound, match="no manifest for platform linux/s390x") as err:
        svc.pull_image(ref, PullImageOptions(platform="linux/s390x"))
    assert "linux/amd64" in str(err.value) and "linux/arm64/v8" in str(err.value)
    assert_nothing_left(svc, ref)
    with pytest.raises(errors.InvalidArgument, match="platform"):
        svc.pull_image(ref, PullImageOptions(platform="linux/arm64/v8/extra"))


def test_unknown_snapshotter_fails_before_download(svc: DefaultService, formats: dict[str, str]) -> None:
    ref = formats["oci-manifest"]
    with pytest.raises(errors.InvalidArgument, match="snapshotter 'nosuch'"):
        svc.pull_image(ref, PullImageOptions(snapshotter="nosuch"))
    assert_nothing_left(svc, ref)


def test_pull_without_unpack(svc: DefaultService, formats: dict[str, str]) -> None:
    ref = formats["docker-v2s2"]
    before = set(snapshots(svc.client))
    info = svc.pull_image(ref, PullImageOptions(unpack=False))
    assert set(snapshots(svc.client)) == before
    resolved = svc.images.resolve(ref)
    assert "containerd.io/gc.ref.snapshot.overlayfs" not in content_labels(svc.client, resolved.config_digest)
    assert svc.get_image(ref).id == info.id
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))


def test_pull_by_digest(svc: DefaultService, formats: dict[str, str], registry: str) -> None:
    ref = formats["oci-manifest"]
    digest = "sha256:" + hashlib.sha256(skopeo_inspect_raw(ref)).hexdigest()
    by_digest = f"{registry}/ctr-magic/busybox@{digest}"
    info = svc.pull_image(by_digest)
    assert (info.name, info.id) == (by_digest, digest)
    svc.delete_image(by_digest, DeleteImageOptions(synchronous=True))
    wrong = f"{registry}/ctr-magic/busybox@sha256:{'0' * 64}"
    with pytest.raises(errors.NotFound, match="has no manifest sha256:0000"):
        svc.pull_image(wrong)
    assert_nothing_left(svc, wrong)


