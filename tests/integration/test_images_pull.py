"""Pulling, listing, getting and deleting images on the private containerd, checked against ctr."""

from __future__ import annotations

from datetime import timezone

import images_support
import pytest
from images_support import (
    active_ingests,
    assert_nothing_left,
    content_digests,
    content_labels,
    ctr_cmd,
    gc,
    snapshots,
    wipe_namespace,
)

from ctr_magic import errors
from ctr_magic.containerd.client import ContainerdClient
from ctr_magic.containerd.imagestore import chain_ids
from ctr_magic.containerd.service import DefaultService
from ctr_magic.env import EnvironmentInfo
from ctr_magic.types import DeleteImageOptions, LayerProgress, PullImageOptions

images_namespace = images_support.images_namespace
svc = images_support.svc


def _image_blobs(svc: DefaultService, name: str) -> tuple[list[str], list[str]]:
    """(all blob digests the host platform needs incl. index/manifest/config, chain IDs)."""
    resolved = svc.images.resolve(name)
    digests = [resolved.target_digest, resolved.manifest_digest, resolved.config_digest]
    digests += [layer["digest"] for layer in resolved.layers]
    return list(dict.fromkeys(digests)), resolved.chain_ids


def test_pull_get_list_delete(svc: DefaultService, test_images: dict[str, str], registry: str) -> None:
    ref = test_images["busybox"]
    info = svc.pull_image(ref)
    assert info.name == ref  # already fully qualified: 127.0.0.1:PORT/ctr-magic/busybox:latest
    assert info.tags == [ref]
    assert info.id.startswith("sha256:") and len(info.id) == 71
    assert info.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert info.created is not None and info.created.tzinfo == timezone.utc
    assert info.platforms and info.platforms[0].startswith("linux/")
    assert info.size > 1_000_000  # busybox layer + manifest + config

    got = svc.get_image(ref)
    assert (got.id, got.size, got.platforms) == (info.id, info.size, info.platforms)
    assert svc.get_image("ctr-magic/busybox:latest").name == ref  # suffix fallback of the contract
    assert ref in [image.name for image in svc.list_images()]

    blobs, chains = _image_blobs(svc, ref)
    assert set(blobs) <= content_digests(svc.client)
    assert set(chains) <= set(snapshots(svc.client))
    assert_nothing_left(svc)

    svc.delete_image(ref, DeleteImageOptions(synchronous=True))
    with pytest.raises(errors.NotFound, match="busybox"):
        svc.get_image(ref)
    # GC ran before delete_image returned: none of the image's blobs or snapshots survive.
    assert not set(blobs) & content_digests(svc.client)
    assert not set(chains) & set(snapshots(svc.client))


def test_size_matches_ctr(svc: DefaultService, test_images: dict[str, str], environment: EnvironmentInfo,
                          images_namespace: str) -> None:
    ref = test_images["multi"]
    info = svc.pull_image(ref)
    listing = ctr_cmd(environment, images_namespace, "images", "ls").stdout
    line = next(row for row in listing.splitlines() if row.startswith(ref + " "))
    assert info.id in line
    assert "linux/amd64,linux/arm64/v8" in line or "linux/arm64" in line
    # ctr prints sizes in KiB/MiB with one decimal; compare in the same unit.
    size_text = line.split()[3] + " " + line.split()[4]
    number, unit = size_text.split()
    factor = {"B": 1, "KiB": 1024, "MiB": 1024**2}[unit]
    assert abs(info.size - float(number) * factor) < 0.06 * factor
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))


def test_progress_events_per_layer(svc: DefaultService, test_images: dict[str, str]) -> None:
    ref = test_images["layers"]
    events: list[LayerProgress] = []
    info = svc.pull_image(ref, PullImageOptions(progress=events.append))
    resolved = svc.images.resolve(ref)
    for layer in resolved.layers:
        mine = [e for e in events if e.digest == layer["digest"]]
        states = [e.state for e in mine]
        assert states[0] == "waiting"
        assert "done" in states or "exists" in states
        assert states[-2:] == ["unpacking", "unpacked"]
        assert all(e.ref == info.name and e.total == layer["size"] for e in mine)
        counts = [e.done for e in mine if e.state == "downloading"]
        assert counts == sorted(counts)
    # The second pull finds everything: blobs "exists", snapshots already there.
    before = set(snapshots(svc.client))
    again: list[LayerProgress] = []
    svc.pull_image(ref, PullImageOptions(progress=again.append))
    assert {e.state for e in again if e.state in ("done", "exists", "downloading")} == {"exists"} | (
        {"downloading"} if any(e.state == "downloading" for e in again) else set())
    assert set(snapshots(svc.client)) == before
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))


def test_five_layers_unpack_to_a_chain(svc: DefaultService, test_images: dict[str, str]) -> None:
    ref = test_images["layers"]
    svc.pull_image(ref)
    resolved = svc.images.resolve(ref)
    assert len(resolved.layers) == 5
    chain = chain_ids(resolved.diff_ids)
    snaps = snapshots(svc.client)
    for i, chain_id in enumerate(chain):
        assert snaps[chain_id].parent == (chain[i - 1] if i else "")
        assert snaps[chain_id].kind == 3  # committed
    assert content_labels(svc.client, resolved.config_digest)["containerd.io/gc.ref.snapshot.overlayfs"] == chain[-1]
    for layer, diff_id in zip(resolved.layers, resolved.diff_ids, strict=True):
        assert content_labels(svc.client, layer["digest"])["containerd.io/uncompressed"] == diff_id
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))
    assert not set(chain) & set(snapshots(svc.client))


def _labels_by_digest(client: ContainerdClient) -> dict[str, dict[str, str]]:
    return {digest: content_labels(client, digest) for digest in content_digests(client)}


def test_gc_labels_equal_ctrs(svc: DefaultService, test_images: dict[str, str], environment: EnvironmentInfo,
                              images_namespace: str) -> None:
    """Content labels after our pull are those after `ctr images pull` (in a namespace of its own)."""
    ref = test_images["multi"]
    ctr_ns = images_namespace + "-ctr"
    ctr_client = ContainerdClient(environment.containerd_socket, ctr_ns)
    try:
        ctr_cmd(environment, ctr_ns, "images", "pull", "--plain-http", ref)
        svc.pull_image(ref)
        ours, theirs = _labels_by_digest(svc.client), _labels_by_digest(ctr_client)
        resolved = svc.images.resolve(ref)
        wanted = {resolved.target_digest, resolved.manifest_digest, resolved.config_digest,
                  *(layer["digest"] for layer in resolved.layers)}
        assert wanted <= set(theirs)
        for digest in wanted:
            assert ours[digest] == theirs[digest], digest
    finally:
        wipe_namespace(ctr_client)
        ctr_client.close()
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))


def test_image_pulled_by_ctr_is_usable(svc: DefaultService, test_images: dict[str, str],
                                       environment: EnvironmentInfo, images_namespace: str) -> None:
    ref = test_images["config"]
    ctr_cmd(environment, images_namespace, "images", "pull", "--plain-http", ref)
    info = svc.get_image(ref)
    assert info.id == svc.images.record(ref).target.digest
    resolved = svc.images.resolve(ref)
    assert resolved.runtime_config["WorkingDir"] == "/work"
    assert resolved.top_chain_id in snapshots(svc.client)  # ctr unpacked it; our pull finds it done
    events: list[LayerProgress] = []
    svc.pull_image(ref, PullImageOptions(progress=events.append))
    assert not [e for e in events if e.state in ("done", "unpacking")]
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))
    assert ref not in ctr_cmd(environment, images_namespace, "images", "ls", "-q").stdout.split()


def test_image_pulled_by_us_runs_with_ctr(svc: DefaultService, test_images: dict[str, str],
                                          environment: EnvironmentInfo, images_namespace: str,
                                          unique_id: str) -> None:
    ref = test_images["busybox"]
    svc.pull_image(ref)
    res = ctr_cmd(environment, images_namespace, "run", "--rm", ref, unique_id, "/bin/sh", "-c",
                  "cat /etc/passwd | head -1; echo ran-by-ctr")
    assert res.stdout.split() == ["root:x:0:0:root:/root:/bin/sh", "ran-by-ctr"]
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))


@pytest.mark.parametrize(
    "ref",
    ["", "   ", "Busybox/UPPER:latest", "busy box", "http://127.0.0.1:5000/x", "x@sha256:abc", "x:bad tag",
     "x:" + "t" * 200],
)
def test_malformed_refs_are_refused(svc: DefaultService, ref: str) -> None:
    with pytest.raises(errors.InvalidArgument) as err:
        svc.pull_image(ref)
    assert "\n" not in str(err.value)
    assert_nothing_left(svc)


def test_unknown_repository_and_tag(svc: DefaultService, registry: str, test_images: dict[str, str]) -> None:
    missing_repo = f"{registry}/ctr-magic/no-such-repo:latest"
    with pytest.raises(errors.NotFound, match="no repository 'ctr-magic/no-such-repo'") as err:
        svc.pull_image(missing_repo)
    assert missing_repo in str(err.value)
    missing_tag = f"{registry}/ctr-magic/busybox:no-such-tag"
    with pytest.raises(errors.NotFound, match="no tag 'no-such-tag'") as err:
        svc.pull_image(missing_tag)
    assert missing_tag in str(err.value)
    assert_nothing_left(svc, missing_tag)
    assert active_ingests(svc.client) == []
    with pytest.raises(errors.NotFound, match="not found"):
        svc.get_image("ctr-magic/never-pulled:1")
    with pytest.raises(errors.NotFound):
        svc.delete_image("ctr-magic/never-pulled:1")


def test_gc_keeps_a_pulled_image_and_ctr_rm_frees_it(svc: DefaultService, test_images: dict[str, str],
                                                     environment: EnvironmentInfo, images_namespace: str) -> None:
    """Nothing we pulled is collected while the image exists; `ctr images rm` + GC removes it all."""
    ref = test_images["layers"]
    svc.pull_image(ref)
    blobs, chains = _image_blobs(svc, ref)
    gc(svc)
    assert set(blobs) <= content_digests(svc.client)
    assert set(chains) <= set(snapshots(svc.client))
    ctr_cmd(environment, images_namespace, "images", "rm", "--sync", ref)
    assert not set(blobs) & content_digests(svc.client)
    assert not set(chains) & set(snapshots(svc.client))
