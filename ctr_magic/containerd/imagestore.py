"""Resolving a stored image: record -> (index) -> manifest -> config, layers and chain IDs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Optional

from .. import errors
from ..constants import CONFIG_MEDIA_TYPES, INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES
from ..platforms import Platform, format_platform, host_platform
from ..reference import match_stored_name
from .client import ContainerdClient
from .content import ContentStore
from .convert import to_datetime
from .pb import images_pb2, images_pb2_grpc


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI chain IDs: chain[0] = diff[0]; chain[n] = sha256(chain[n-1] + " " + diff[n])."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


@dataclass
class ResolvedImage:
    """A stored image, resolved for one platform."""

    name: str
    target_digest: str
    target_media_type: str
    target_size: int
    manifest_digest: str
    manifest: dict[str, Any]
    config_digest: str
    config: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    created_at: Any = None
    platforms: list[str] = field(default_factory=list)

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("layers", []))

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids", []))

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    @property
    def top_chain_id(self) -> str:
        ids = self.chain_ids
        return ids[-1] if ids else ""

    @property
    def runtime_config(self) -> dict[str, Any]:
        return dict(self.config.get("config") or {})

    @property
    def size(self) -> int:
        """Compressed size of what this platform needs: manifest, config and layers."""
        return (
            int(self.manifest.get("config", {}).get("size", 0))
            + sum(int(layer.get("size", 0)) for layer in self.layers)
        )


class ImageStore:
    """Image records (Images service) plus the manifests and configs they point to."""

    def __init__(self, client: ContainerdClient) -> None:
        self._client = client
        self._stub = client.stub(images_pb2_grpc.ImagesStub)
        self.content = ContentStore(client)

    def records(self, filters: Optional[list[str]] = None) -> list[images_pb2.Image]:
        resp = self._client.call(self._stub.List, images_pb2.ListImagesRequest(filters=filters or []),
                                 what="listing images")
        return list(resp.images)

    def record(self, name: str) -> images_pb2.Image:
        resp = self._client.call(self._stub.Get, images_pb2.GetImageRequest(name=name),
                                 what=f"image {name}")
        return resp.image

    def find_record(self, ref: str) -> images_pb2.Image:
        """The contract's fallbacks: exact, without docker.io/library/, then suffix match."""
        if not ref:
            raise errors.InvalidArgument("image reference is empty", hint="give a name such as busybox:latest")
        try:
            return self.record(ref)
        except errors.NotFound:
            pass
        names = [img.name for img in self.records()]
        found = match_stored_name(ref, names)
        if found is None:
            raise errors.NotFound(f"image {ref!r} not found in namespace {self._client.namespace!r}",
                                  hint=f"pull it first: %ctr pull {ref}")
        return self.record(found)

    def manifest_for(self, target_digest: str, media_type: str,
                     platform: Optional[Platform] = None) -> tuple[str, dict[str, Any], list[str]]:
        """Follow an index to the manifest for *platform*; returns (digest, manifest, platforms)."""
        want = platform or host_platform()
        doc = self.content.read_json(target_digest)
        media_type = doc.get("mediaType") or media_type
        if media_type in INDEX_MEDIA_TYPES or "manifests" in doc:
            entries = doc.get("manifests", [])
            platforms = [format_platform(m.get("platform")) for m in entries if m.get("platform")]
            for entry in entries:
                if entry.get("platform") and want.matches(entry["platform"]):
                    if entry.get("mediaType") in INDEX_MEDIA_TYPES:
                        return self.manifest_for(entry["digest"], entry["mediaType"], want)
                    if self.content.exists(entry["digest"]):
                        return entry["digest"], self.content.read_json(entry["digest"]), platforms
            raise errors.NotFound(f"image index {target_digest} has no stored manifest for platform {want}",
                                  hint=f"available: {', '.join(p for p in platforms if p) or 'none'}")
        if media_type in MANIFEST_MEDIA_TYPES or "layers" in doc:
            return target_digest, doc, []
        raise errors.NotSupported(f"image media type {media_type!r} is not supported")

    def resolve(self, ref: str, platform: Optional[Platform] = None) -> ResolvedImage:
        record = self.find_record(ref)
        target = record.target
        manifest_digest, manifest, platforms = self.manifest_for(target.digest, target.media_type, platform)
        config_desc = manifest.get("config", {})
        if config_desc.get("mediaType") and config_desc["mediaType"] not in CONFIG_MEDIA_TYPES:
            raise errors.NotSupported(f"image {record.name}: config media type {config_desc['mediaType']!r} "
                                      "is not a container image")
        config = self.content.read_json(config_desc["digest"])
        if not platforms:
            platforms = [format_platform(config)]
        created = to_datetime(record, "created_at")
        return ResolvedImage(
            name=record.name,
            target_digest=target.digest,
            target_media_type=target.media_type,
            target_size=target.size,
            manifest_digest=manifest_digest,
            manifest=manifest,
            config_digest=config_desc["digest"],
            config=config,
            labels=dict(record.labels),
            created_at=created,
            platforms=platforms,
        )
