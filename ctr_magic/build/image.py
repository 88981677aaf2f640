"""The image a containerd build ends with: config and manifest blobs written with the labels
containerd's own client sets on a pulled image (the manifest names its config and layers, the config
names the top snapshot), then one image record per tag. Until the records exist the build's lease
keeps the blobs; afterwards the records do.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..constants import MEDIA_OCI_CONFIG, MEDIA_OCI_MANIFEST
from ..containerd.gclabels import children_labels, snapshot_label
from ..containerd.imageinfo import record_image
from ..containerd.ingest import ref_key, write_bytes
from ..containerd.spec import to_json_bytes
from ..platforms import host_platform
from ..reference import normalize
from ..registry.manifests import Descriptor


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class ImageState:
    """A stage's image as it grows: the full config document, layer descriptors and diff IDs."""

    config: dict[str, Any]
    layers: list[Descriptor] = field(default_factory=list)

    @classmethod
    def scratch(cls) -> ImageState:
        platform = host_platform()
        doc: dict[str, Any] = {"architecture": platform.architecture, "os": platform.os, "config": {},
                               "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
        if platform.variant:
            doc["variant"] = platform.variant
        return cls(doc)

    def copy(self) -> ImageState:
        return ImageState(copy.deepcopy(self.config), list(self.layers))

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids", []))

    def add_layer(self, layer: Descriptor, diff_id: str, history: dict[str, Any]) -> None:
        self.layers.append(layer)
        self.config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(diff_id)
        self.add_history(history)

    def add_history(self, history: dict[str, Any]) -> None:
        self.config.setdefault("history", []).append(history)


def write_image(service: Any, state: ImageState, runtime_config: dict[str, Any], top_chain: str, *,
                snapshotter: str, lease: str, names: list[str]) -> Descriptor:
    """Write config + manifest under *lease* and point every name in *names* at the manifest."""
    doc = copy.deepcopy(state.config)
    runtime = dict(runtime_config)
    author = runtime.pop("Author", "")
    if author:
        doc["author"] = author
    doc["config"] = runtime
    doc["created"] = now()
    config_bytes = to_json_bytes(doc)
    config_desc = Descriptor(media_type=MEDIA_OCI_CONFIG, digest=_digest(config_bytes), size=len(config_bytes))
    client = service.client
    write_bytes(client, ref_key(MEDIA_OCI_CONFIG, config_desc.digest), config_desc.digest, config_bytes,
                lease=lease, labels={snapshot_label(snapshotter): top_chain} if top_chain else None)
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST, "config": config_desc.to_dict(),
                "layers": [d.to_dict() for d in state.layers]}
    manifest_bytes = to_json_bytes(manifest)
    manifest_desc = Descriptor(media_type=MEDIA_OCI_MANIFEST, digest=_digest(manifest_bytes), size=len(manifest_bytes))
    write_bytes(client, ref_key(MEDIA_OCI_MANIFEST, manifest_desc.digest), manifest_desc.digest, manifest_bytes,
                lease=lease, labels=children_labels([config_desc, *state.layers]))
    for name in names:
        record_image(client, normalize(name), manifest_desc)
    return manifest_desc


__all__ = ["ImageState", "now", "write_image"]
