"""The offline OCI image builder: determinism, digests, layout validity and tar contents."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from ctr_magic import constants, errors, ocilayout, platforms, testimages
from ctr_magic.testimages import busybox

try:
    testimages.busybox_path()
    HAVE_BUSYBOX = True
except errors.Unavailable:
    HAVE_BUSYBOX = False

needs_busybox = pytest.mark.skipif(not HAVE_BUSYBOX, reason="needs busybox-static")


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def _json(layout: Path, digest: str) -> dict:
    return json.loads(_blob(layout, digest))


def _tar_members(layout: Path, digest: str) -> tuple[list[tarfile.TarInfo], tarfile.TarFile]:
    data = gzip.decompress(_blob(layout, digest))
    tar = tarfile.open(fileobj=io.BytesIO(data))  # noqa: SIM115  (returned to the caller)
    return tar.getmembers(), tar


def _check_descriptor(layout: Path, desc: dict) -> bytes:
    data = _blob(layout, desc["digest"])
    assert len(data) == desc["size"]
    assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"]
    return data


def _walk(layout: Path, desc: dict) -> int:
    """Validate a descriptor tree recursively; returns the number of manifests seen."""
    data = _check_descriptor(layout, desc)
    doc = json.loads(data)
    assert doc["schemaVersion"] == 2
    if desc["mediaType"] == constants.MEDIA_OCI_INDEX:
        assert doc["mediaType"] == constants.MEDIA_OCI_INDEX
        for m in doc["manifests"]:
            assert m["platform"]["os"] == "linux"
        return sum(_walk(layout, m) for m in doc["manifests"])
    assert desc["mediaType"] == doc["mediaType"] == constants.MEDIA_OCI_MANIFEST
    config = json.loads(_check_descriptor(layout, doc["config"]))
    assert doc["config"]["mediaType"] == constants.MEDIA_OCI_CONFIG
    assert len(config["rootfs"]["diff_ids"]) == len(doc["layers"]) == len(config["history"])
    for layer, diff_id in zip(doc["layers"], config["rootfs"]["diff_ids"], strict=True):
        assert layer["mediaType"] == constants.MEDIA_OCI_LAYER_GZIP
        compressed = _check_descriptor(layout, layer)
        assert "sha256:" + hashlib.sha256(gzip.decompress(compressed)).hexdigest() == diff_id
    return 1


# ----------------------------------------------------------------------------- pure builder (no busybox needed)


def test_layer_tar_is_deterministic_sorted_and_root_owned(tmp_path: Path) -> None:
    tree = {
        "/b/file.txt": b"b",
        "a/z.txt": "z",
        "a/sub/deep.sh": ocilayout.File(b"#!/bin/sh\n", mode=0o755),
        "a/link": ocilayout.Symlink("z.txt"),
        "home/app": ocilayout.Dir(uid=1000, gid=1000),
        "tmp": ocilayout.Dir(mode=0o1777),
        "etc/gone": ocilayout.Whiteout(),
    }
    one = ocilayout.OCILayout(tmp_path / "one").add_layer(tree)
    two = ocilayout.OCILayout(tmp_path / "two").add_layer(dict(reversed(list(tree.items()))))
    assert one == two
    assert _blob(tmp_path / "one", one.digest) == _blob(tmp_path / "two", two.digest)

    raw = _blob(tmp_path / "one", one.digest)
    assert raw[:2] == b"\x1f\x8b"
    assert raw[3] & 0x08 == 0, "gzip header must not carry a file name"
    assert raw[4:8] == b"\0\0\0\0", "gzip mtime must be 0"
    assert one.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(raw)).hexdigest()
    assert one.descriptor.size == len(raw)

    members, tar = _tar_members(tmp_path / "one", one.digest)
    names = [m.name for m in members]
    assert names == [
        "a", "a/link", "a/sub", "a/sub/deep.sh", "a/z.txt", "b", "b/file.txt",
        "etc", "etc/.wh.gone", "home", "home/app", "tmp",
    ]  # fmt: skip
    by_name = {m.name: m for m in members}
    assert all(m.mtime == 0 for m in members)
    assert by_name["a"].isdir() and by_name["a"].mode == 0o755  # implicit parent
    assert by_name["a/link"].issym() and by_name["a/link"].linkname == "z.txt"
    assert by_name["a/sub/deep.sh"].mode == 0o755
    assert tar.extractfile("a/sub/deep.sh").read() == b"#!/bin/sh\n"  # type: ignore[union-attr]
    assert (by_name["home/app"].uid, by_name["home/app"].gid) == (1000, 1000)
    assert by_name["tmp"].mode == 0o1777
    assert all(m.uid == 0 for n, m in by_name.items() if n != "home/app")


@pytest.mark.parametrize("bad", ["", "/", "../etc/passwd", "a/../../x"])
def test_invalid_paths_are_rejected(tmp_path: Path, bad: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        ocilayout.OCILayout(tmp_path).add_layer({bad: b"x"})


def test_image_config_manifest_and_index_json(tmp_path: Path) -> None:
    layout = ocilayout.OCILayout(tmp_path)
    layer = layout.add_layer({"hello.txt": "hi\n"}, created_by="test layer")
    cfg = ocilayout.ImageConfig(env=["A=1"], entrypoint=["/x"], cmd=["y"], working_dir="/w", user="app",
                                labels={"k": "v"})
    desc = layout.add_image([layer], cfg, platform={"os": "linux", "architecture": "arm64", "variant": "v8"})
    image = layout.tag(desc, "v1")
    assert image.oci_ref == f"oci:{tmp_path}:v1"
    assert not image.is_index

    index = json.loads((tmp_path / "index.json").read_text())
    assert json.loads((tmp_path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert [m["annotations"][ocilayout.ANNOTATION_REF_NAME] for m in index["manifests"]] == ["v1"]
    assert _walk(tmp_path, index["manifests"][0]) == 1

    manifest = _json(tmp_path, desc.digest)
    config = _json(tmp_path, manifest["config"]["digest"])
    assert (config["os"], config["architecture"], config["variant"]) == ("linux", "arm64", "v8")
    assert config["config"] == {
        "Env": ["A=1"], "Entrypoint": ["/x"], "Cmd": ["y"], "WorkingDir": "/w", "User": "app", "Labels": {"k": "v"},
    }  # fmt: skip
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer.diff_id]}
    assert config["history"][0]["created_by"] == "test layer"

    # retagging replaces, other tags stay
    layout.tag(desc, "v2")
    layout.tag(layout.add_image([layer]), "v1")
    assert sorted(layout.tags()) == ["v1", "v2"]
    assert layout.resolve("v2").digest == desc.digest
    assert layout.resolve("v1").digest != desc.digest
    with pytest.raises(errors.NotFound):
        layout.resolve("nope")


def test_random_layers_are_reproducible_and_incompressible(tmp_path: Path) -> None:
    def build(where: str, seed: int) -> ocilayout.Layer:
        tree = {"data.bin": testimages.random_stream_file(3 * (1 << 20) + 123, seed=str(seed))}
        return ocilayout.OCILayout(tmp_path / where).add_layer(tree, compresslevel=1)

    a, b, c = build("a", 1), build("b", 1), build("c", 2)
    assert a == b
    assert a.digest != c.digest
    assert a.descriptor.size > 3 * (1 << 20)  # incompressible
    _, tar = _tar_members(tmp_path / "a", a.digest)
    data = tar.extractfile("data.bin").read()  # type: ignore[union-attr]
    assert len(data) == 3 * (1 << 20) + 123
    assert data[: 1 << 20] != data[1 << 20 : 2 << 20]


def test_host_platform_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    # The layout writer takes its platforms from ctr_magic.platforms (one implementation).
    monkeypatch.setattr(platforms._platform, "machine", lambda: "x86_64")
    assert platforms.host_platform().to_oci() == {"os": "linux", "architecture": "amd64"}
    monkeypatch.setattr(platforms._platform, "machine", lambda: "aarch64")
    assert platforms.host_platform().to_oci() == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    arm64 = {"os": "linux", "architecture": "arm64", "variant": "v8"}
    assert platforms.parse_platform("linux/arm64/v8").to_oci() == arm64
    with pytest.raises(errors.InvalidArgument):
        platforms.parse_platform("linux/arm64/v8/extra")


def test_dynamic_busybox_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    dynamic = next((p for p in ("/bin/ls", "/usr/bin/ls", "/bin/true") if Path(p).exists()), None)
    if dynamic is None or busybox._elf_is_static(Path(dynamic)):
        pytest.skip("no dynamically linked binary to test with")
    monkeypatch.setattr(busybox.shutil, "which", lambda *a, **k: dynamic)
    with pytest.raises(errors.Unavailable, match="busybox-static"):
        testimages.busybox_path()


def test_publish_rejects_colon_in_layout_path(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument):
        testimages.publish(tmp_path / "a:b", "127.0.0.1:1", "repo", "tag")


# ----------------------------------------------------------------------------- busybox presets


@needs_busybox
def test_presets_are_deterministic_and_valid(tmp_path: Path) -> None:
    first = testimages.build_test_images(tmp_path / "one")
    second = testimages.build_test_images(tmp_path / "two")
    assert {k: v.digest for k, v in first.items()} == {k: v.digest for k, v in second.items()}
    index = json.loads((tmp_path / "one" / "index.json").read_text())
    assert sorted(m["annotations"][ocilayout.ANNOTATION_REF_NAME] for m in index["manifests"]) == sorted(first)
    assert sum(_walk(tmp_path / "one", m) for m in index["manifests"]) == 3 + 2
    # no stray temp files
    assert not [p for p in (tmp_path / "one" / "blobs" / "sha256").iterdir() if p.name.startswith(".")]


@needs_busybox
def test_busybox_layer_contents(tmp_path: Path) -> None:
    image = testimages.busybox_single_layer(tmp_path)
    manifest = _json(tmp_path, image.digest)
    assert len(manifest["layers"]) == 1
    members, tar = _tar_members(tmp_path, manifest["layers"][0]["digest"])
    by_name = {m.name: m for m in members}
    bb = by_name["bin/busybox"]
    assert bb.isfile() and bb.mode == 0o755
    assert tar.extractfile(bb).read() == testimages.busybox_path().read_bytes()  # type: ignore[union-attr]
    for applet in ("sh", "ls", "cat", "echo", "sleep", "wget", "httpd", "nc", "ip", "sha256sum", "uname"):
        link = by_name[f"bin/{applet}"]
        assert link.issym() and link.linkname == "busybox"
    passwd = tar.extractfile("etc/passwd").read().decode()  # type: ignore[union-attr]
    assert "root:x:0:0:" in passwd and "app:x:1000:1000:" in passwd and "nobody:x:65534:" in passwd
    group = tar.extractfile("etc/group").read().decode()  # type: ignore[union-attr]
    assert "app:x:1000:" in group
    assert by_name["tmp"].mode == 0o1777
    assert by_name["root"].isdir()
    assert (by_name["home/app"].uid, by_name["home/app"].gid) == (1000, 1000)
    assert all(m.mtime == 0 for m in members)
    config = _json(tmp_path, manifest["config"]["digest"])
    assert config["architecture"] == platforms.host_platform().architecture
    assert config["config"]["Cmd"] == ["/bin/sh"]


@needs_busybox
def test_multi_layer_preset(tmp_path: Path) -> None:
    image = testimages.busybox_multi_layer(tmp_path, 5)
    assert image.tag == "5"
    manifest = _json(tmp_path, image.digest)
    assert len(manifest["layers"]) == 5
    for i, layer in enumerate(manifest["layers"][1:], start=1):
        _, tar = _tar_members(tmp_path, layer["digest"])
        assert tar.extractfile(f"layer-{i}.txt").read() == f"layer {i}\n".encode()  # type: ignore[union-attr]
    with pytest.raises(errors.InvalidArgument):
        testimages.busybox_multi_layer(tmp_path, 0)


@needs_busybox
def test_config_preset(tmp_path: Path) -> None:
    image = testimages.busybox_with_config(tmp_path)
    config = _json(tmp_path, _json(tmp_path, image.digest)["config"]["digest"])["config"]
    assert "FOO=bar" in config["Env"] and any(e.startswith("PATH=") for e in config["Env"])
    assert config["WorkingDir"] == "/work"
    assert config["User"] == "app"
    assert config["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["Cmd"] == ["echo hello from config"]


@needs_busybox
def test_multi_platform_preset(tmp_path: Path) -> None:
    image = testimages.multi_platform_index(tmp_path)
    assert image.is_index
    index = _json(tmp_path, image.digest)
    seen = {}
    for m in index["manifests"]:
        arch = m["platform"]["architecture"]
        manifest = _json(tmp_path, m["digest"])
        config = _json(tmp_path, manifest["config"]["digest"])
        assert config["architecture"] == arch
        assert config["config"]["Labels"]["platform"] == arch
        _, tar = _tar_members(tmp_path, manifest["layers"][-1]["digest"])
        assert tar.extractfile("platform.txt").read() == f"{arch}\n".encode()  # type: ignore[union-attr]
        seen[arch] = manifest["layers"][0]["digest"]
    assert set(seen) == {"amd64", "arm64"}
    assert seen["amd64"] == seen["arm64"], "the busybox layer is shared"
    # the index.json entry of an index carries no platform
    entry = json.loads((tmp_path / "index.json").read_text())["manifests"][0]
    assert entry["mediaType"] == constants.MEDIA_OCI_INDEX and "platform" not in entry


@needs_busybox
def test_large_random_image_small_shape(tmp_path: Path) -> None:
    a = testimages.large_random_image(tmp_path / "a", layers=2, size_mib=1, seed=7)
    b = testimages.large_random_image(tmp_path / "b", layers=2, size_mib=1, seed=7)
    c = testimages.large_random_image(tmp_path / "c", layers=2, size_mib=1, seed=8)
    assert a.digest == b.digest != c.digest
    manifest = _json(tmp_path / "a", a.digest)
    assert len(manifest["layers"]) == 3
    assert all(layer["size"] > 1 << 20 for layer in manifest["layers"][1:])
    assert _walk(tmp_path / "a", json.loads((tmp_path / "a" / "index.json").read_text())["manifests"][0]) == 1
