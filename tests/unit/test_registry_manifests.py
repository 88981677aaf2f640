"""Manifest parsing and platform selection, without a registry."""

from __future__ import annotations

import json

import pytest

from ctr_magic import errors
from ctr_magic.constants import (
    MEDIA_DOCKER_MANIFEST,
    MEDIA_DOCKER_MANIFEST_LIST,
    MEDIA_DOCKER_MANIFEST_V1_SIGNED,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
)
from ctr_magic.platforms import Platform
from ctr_magic.registry import Descriptor, Index, Manifest, parse, select_manifest
from ctr_magic.registry.manifests import MANIFEST_ACCEPT, media_type_of

D = "sha256:" + "a" * 64


def _desc(media_type: str, n: int, platform: dict[str, str] | None = None, **extra: object) -> dict[str, object]:
    out: dict[str, object] = {"mediaType": media_type, "digest": f"sha256:{n:064x}", "size": 100 + n}
    if platform:
        out["platform"] = platform
    out.update(extra)
    return out


def _index(*entries: dict[str, object], media_type: str = MEDIA_OCI_INDEX) -> Index:
    raw = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)}).encode()
    doc = parse(raw, media_type, "test index")
    assert isinstance(doc, Index)
    return doc


def test_accept_header_lists_index_and_manifest_types_but_not_schema1() -> None:
    for media_type in (MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_MANIFEST_LIST):
        assert media_type in MANIFEST_ACCEPT
    assert "distribution.manifest.v1" not in MANIFEST_ACCEPT


@pytest.mark.parametrize(
    ("doc", "header", "expected"),
    [
        ({"mediaType": MEDIA_DOCKER_MANIFEST, "schemaVersion": 2}, "", MEDIA_DOCKER_MANIFEST),
        ({"schemaVersion": 2, "manifests": []}, "", MEDIA_OCI_INDEX),
        ({"schemaVersion": 2, "config": {}, "layers": []}, "application/json", MEDIA_OCI_MANIFEST),
        ({"schemaVersion": 2, "config": {}, "layers": []}, MEDIA_DOCKER_MANIFEST + "; charset=utf-8",
         MEDIA_DOCKER_MANIFEST),
        ({"schemaVersion": 1, "name": "x", "fsLayers": []}, "", "application/vnd.docker.distribution.manifest.v1+json"),
    ],
)
def test_media_type_of(doc: dict[str, object], header: str, expected: str) -> None:
    assert media_type_of(json.dumps(doc).encode(), header) == expected


def test_parse_manifest() -> None:
    raw = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_DOCKER_MANIFEST,
                      "config": _desc("application/vnd.docker.container.image.v1+json", 1),
                      "layers": [_desc("application/vnd.docker.image.rootfs.diff.tar.gzip", 2)]}).encode()
    doc = parse(raw, MEDIA_DOCKER_MANIFEST, "m")
    assert isinstance(doc, Manifest)
    assert [c.digest for c in doc.children] == [f"sha256:{1:064x}", f"sha256:{2:064x}"]
    assert doc.layers[0].size == 102


@pytest.mark.parametrize("media_type",
                         [MEDIA_DOCKER_MANIFEST_V1_SIGNED, "application/vnd.docker.distribution.manifest.v1+json"])
def test_schema1_is_refused_clearly(media_type: str) -> None:
    raw = json.dumps({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}).encode()
    with pytest.raises(errors.NotSupported, match="Docker schema 1") as err:
        parse(raw, media_type, "image r/x:y")
    assert "image r/x:y" in str(err.value) and "push the image again" in str(err.value)
    with pytest.raises(errors.NotSupported, match="schema 1"):
        parse(raw, MEDIA_OCI_MANIFEST, "image r/x:y")  # a schema 1 body under a v2 header


@pytest.mark.parametrize(
    ("raw", "media_type", "error", "pattern"),
    [
        (b"not json", MEDIA_OCI_MANIFEST, errors.CtrError, "not valid JSON"),
        (b"[1, 2]", MEDIA_OCI_MANIFEST, errors.CtrError, "not a JSON object"),
        (b'{"schemaVersion": 2}', MEDIA_OCI_MANIFEST, errors.CtrError, "lacks 'config' or 'layers'"),
        (b'{"schemaVersion": 2}', MEDIA_OCI_INDEX, errors.CtrError, "no 'manifests' list"),
        (b'{"schemaVersion": 2, "config": {"digest": "x"}, "layers": []}', MEDIA_OCI_MANIFEST, errors.CtrError,
         "malformed descriptor"),
        (b"{}", "application/vnd.cncf.helm.config.v1+json", errors.NotSupported, "not a container image"),
    ],
)
def test_parse_rejects_bad_documents(raw: bytes, media_type: str, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        parse(raw, media_type, "doc")


def test_select_prefers_exact_variant() -> None:
    index = _index(
        _desc(MEDIA_OCI_MANIFEST, 1, {"os": "linux", "architecture": "arm64"}),
        _desc(MEDIA_OCI_MANIFEST, 2, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
        _desc(MEDIA_OCI_MANIFEST, 3, {"os": "linux", "architecture": "amd64"}),
    )
    assert select_manifest(index, Platform("linux", "arm64", "v8"), "i").digest == f"sha256:{2:064x}"
    assert select_manifest(index, Platform("linux", "amd64"), "i").digest == f"sha256:{3:064x}"
    assert select_manifest(index, Platform("linux", "arm64"), "i").digest == f"sha256:{1:064x}"


def test_select_skips_attestations_and_foreign_entries() -> None:
    index = _index(
        _desc("application/vnd.in-toto+json", 1, {"os": "linux", "architecture": "amd64"}),
        _desc(MEDIA_OCI_MANIFEST, 2, {"os": "unknown", "architecture": "unknown"}),
        _desc(MEDIA_OCI_MANIFEST, 3, {"os": "linux", "architecture": "amd64"},
              annotations={"vnd.docker.reference.type": "attestation-manifest"}),
        _desc(MEDIA_OCI_MANIFEST, 4, {"os": "linux", "architecture": "amd64"}),
    )
    assert select_manifest(index, Platform("linux", "amd64"), "i").digest == f"sha256:{4:064x}"


def test_select_falls_back_to_entries_without_platform() -> None:
    index = _index(_desc(MEDIA_DOCKER_MANIFEST, 1), media_type=MEDIA_DOCKER_MANIFEST_LIST)
    assert select_manifest(index, Platform("linux", "riscv64"), "i").digest == f"sha256:{1:064x}"


def test_select_names_what_is_available() -> None:
    index = _index(
        _desc(MEDIA_OCI_MANIFEST, 1, {"os": "linux", "architecture": "amd64"}),
        _desc(MEDIA_OCI_MANIFEST, 2, {"os": "linux", "architecture": "arm", "variant": "v7"}),
    )
    with pytest.raises(errors.NotFound) as err:
        select_manifest(index, Platform("linux", "s390x"), "image x:1")
    text = str(err.value)
    assert "image x:1 has no manifest for platform linux/s390x" in text
    assert "linux/amd64, linux/arm/v7" in text


def test_descriptor_round_trip() -> None:
    doc = _desc(MEDIA_OCI_MANIFEST, 5, {"os": "linux", "architecture": "amd64"}, annotations={"a": "b"},
                urls=["https://x"])
    desc = Descriptor.from_dict(doc)
    assert desc.to_dict() == doc
    assert desc.is_manifest and not desc.is_index
    with pytest.raises(errors.CtrError, match="negative size"):
        Descriptor.from_dict({"digest": D, "size": -1})
