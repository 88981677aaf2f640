"""The garbage-collection labels containerd's own client puts on image content.

A parent blob (index or manifest) names its children so that containerd's GC keeps them while the
parent is referenced: ``containerd.io/gc.ref.content.m.<i>`` for manifests, ``...config`` for the
config, ``...l.<i>`` for layers, ``...<i>`` otherwise. Blobs also record where they came from
(``containerd.io/distribution.source.<host>`` = sorted, comma-separated repositories).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..constants import (
    CONFIG_MEDIA_TYPES,
    LABEL_DISTRIBUTION_SOURCE,
    LABEL_GC_REF_CONTENT,
    LABEL_GC_REF_SNAPSHOT,
    MANIFEST_MEDIA_TYPES,
)
from ..registry.manifests import Descriptor
from ..registry.options import host_name

#: containerd refuses label values longer than this (key + value <= 4096).
MAX_LABEL = 4096


_DOCKER_LAYERS = frozenset({
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
})


def is_layer_type(media_type: str) -> bool:
    """containerd's notion of a layer: any OCI layer type, or a Docker rootfs diff (suffixes ignored)."""
    if media_type.startswith("application/vnd.oci.image.layer."):
        return True
    return media_type.split("+", 1)[0] in _DOCKER_LAYERS


def _child_key(media_type: str) -> str:
    if media_type in CONFIG_MEDIA_TYPES:
        return f"{LABEL_GC_REF_CONTENT}.config"
    if media_type in MANIFEST_MEDIA_TYPES:
        return f"{LABEL_GC_REF_CONTENT}.m."
    if is_layer_type(media_type):
        return f"{LABEL_GC_REF_CONTENT}.l."
    return f"{LABEL_GC_REF_CONTENT}."


def children_labels(children: Iterable[Descriptor]) -> dict[str, str]:
    """Labels for a parent blob naming *children*, numbered per kind in order, as containerd does."""
    labels: dict[str, str] = {}
    counts: dict[str, int] = {}
    for child in children:
        key = _child_key(child.media_type)
        index = counts.get(key, 0)
        counts[key] = index + 1
        if index > 0 or key.endswith("."):
            key = f"{key}{index}"
        labels[key] = child.digest
    return labels


def distribution_source_key(domain: str) -> str:
    """``containerd.io/distribution.source.<host>`` (the host without its port, as containerd does)."""
    return f"{LABEL_DISTRIBUTION_SOURCE}.{host_name(domain)}"


def merge_sources(existing: str, repo: str) -> str:
    """Add *repo* to a comma-separated, sorted, duplicate-free list of repositories."""
    repos = {r for r in existing.split(",") if r} if existing else set()
    repos.add(repo)
    return ",".join(sorted(repos))


def distribution_labels(domain: str, repo: str, existing: dict[str, str] | None = None) -> dict[str, str]:
    key = distribution_source_key(domain)
    value = merge_sources((existing or {}).get(key, ""), repo)
    if len(key) + len(value) > MAX_LABEL:
        return {}
    return {key: value}


def snapshot_label(snapshotter: str) -> str:
    return f"{LABEL_GC_REF_SNAPSHOT}.{snapshotter}"
