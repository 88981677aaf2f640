"""What a pull writes besides the bytes: containerd's GC labels, ingest refs, progress events."""

from __future__ import annotations

from ctr_magic.constants import (
    MEDIA_DOCKER_CONFIG,
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_CONFIG,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_MANIFEST,
)
from ctr_magic.containerd.gclabels import (
    children_labels,
    distribution_labels,
    distribution_source_key,
    is_layer_type,
    merge_sources,
    snapshot_label,
)
from ctr_magic.containerd.ingest import ref_key
from ctr_magic.containerd.progress import ProgressReporter
from ctr_magic.registry import Descriptor
from ctr_magic.types import LayerProgress


def _d(media_type: str, n: int) -> Descriptor:
    return Descriptor(media_type, f"sha256:{n:064x}", n)


def test_manifest_children_labels_as_containerd_numbers_them() -> None:
    labels = children_labels([_d(MEDIA_OCI_CONFIG, 1), _d(MEDIA_OCI_LAYER_GZIP, 2), _d(MEDIA_OCI_LAYER_GZIP, 3)])
    assert labels == {
        "containerd.io/gc.ref.content.config": f"sha256:{1:064x}",
        "containerd.io/gc.ref.content.l.0": f"sha256:{2:064x}",
        "containerd.io/gc.ref.content.l.1": f"sha256:{3:064x}",
    }


def test_index_children_and_unknown_types() -> None:
    labels = children_labels([_d(MEDIA_OCI_MANIFEST, 1), _d(MEDIA_DOCKER_MANIFEST, 2), _d("application/x-other", 3),
                              _d("application/x-other", 4)])
    assert labels == {
        "containerd.io/gc.ref.content.m.0": f"sha256:{1:064x}",
        "containerd.io/gc.ref.content.m.1": f"sha256:{2:064x}",
        "containerd.io/gc.ref.content.0": f"sha256:{3:064x}",
        "containerd.io/gc.ref.content.1": f"sha256:{4:064x}",
    }


def test_layer_types() -> None:
    for media_type in (MEDIA_OCI_LAYER_GZIP, "application/vnd.oci.image.layer.v1.tar",
                       "application/vnd.oci.image.layer.v1.tar+zstd", MEDIA_DOCKER_LAYER_GZIP,
                       "application/vnd.docker.image.rootfs.diff.tar",
                       "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"):
        assert is_layer_type(media_type), media_type
    for media_type in (MEDIA_OCI_CONFIG, MEDIA_DOCKER_CONFIG, MEDIA_OCI_MANIFEST, "application/octet-stream"):
        assert not is_layer_type(media_type), media_type


def test_ingest_refs_match_containerds_client() -> None:
    digest = f"sha256:{9:064x}"
    assert ref_key(MEDIA_OCI_LAYER_GZIP, digest) == f"layer-{digest}"
    assert ref_key(MEDIA_DOCKER_MANIFEST, digest) == f"manifest-{digest}"
    assert ref_key(MEDIA_OCI_INDEX, digest) == f"index-{digest}"
    assert ref_key(MEDIA_DOCKER_CONFIG, digest) == f"config-{digest}"
    assert ref_key("application/x-other", digest) == f"unknown-{digest}"


def test_distribution_source() -> None:
    assert distribution_source_key("127.0.0.1:5000") == "containerd.io/distribution.source.127.0.0.1"
    assert distribution_source_key("docker.io") == "containerd.io/distribution.source.docker.io"
    assert merge_sources("", "b/x") == "b/x"
    assert merge_sources("c/y,a/z", "b/x") == "a/z,b/x,c/y"
    assert merge_sources("a/z,b/x", "b/x") == "a/z,b/x"
    assert distribution_labels("reg:1", "team/app", {"containerd.io/distribution.source.reg": "other"}) == {
        "containerd.io/distribution.source.reg": "other,team/app"}
    assert distribution_labels("reg", "r" * 5000) == {}  # too long for a containerd label: skipped
    assert snapshot_label("overlayfs") == "containerd.io/gc.ref.snapshot.overlayfs"


def test_progress_is_throttled_but_keeps_state_changes() -> None:
    seen: list[LayerProgress] = []
    reporter = ProgressReporter("img", seen.append, max_rate=10)
    reporter.post("d1", "m", "waiting", 0, 100)
    for done in range(1, 100):
        reporter.post("d1", "m", "downloading", done, 100)
    reporter.post("d1", "m", "downloading", 100, 100)
    reporter.post("d1", "m", "done", 100, 100)
    reporter.post("d2", "m", "exists", 5, 5)
    reporter.pump()
    states = [e.state for e in seen]
    assert states[0] == "waiting" and states[-2:] == ["done", "exists"]
    downloading = [e.done for e in seen if e.state == "downloading"]
    assert 1 <= len(downloading) <= 3  # a burst within 0.1 s: the first and the completed count
    assert downloading[-1] == 100
    assert all(e.ref == "img" for e in seen)


def test_progress_without_callback_only_wakes() -> None:
    reporter = ProgressReporter("img", None)
    reporter.post("d", "m", "waiting")
    reporter.wake()
    reporter.pump(timeout=5)  # returns at once: the wake-up is queued
    assert not reporter.enabled
