"""Manifests and indexes: descriptors, the Accept header, parsing, and choosing a platform."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from .. import errors
from ..constants import (
    CONFIG_MEDIA_TYPES,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_DOCKER_MANIFEST_LIST,
    MEDIA_DOCKER_MANIFEST_V1,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    SCHEMA1_MEDIA_TYPES,
)
from ..jsondoc import load_json
from ..platforms import Platform, format_platform

#: What we ask registries for, best first. Schema 1 is not listed: registries then convert or refuse.
MANIFEST_ACCEPT = ", ".join(
    [MEDIA_OCI_INDEX, MEDIA_DOCKER_MANIFEST_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST]
)
#: Largest manifest we read into memory (the OCI distribution spec suggests 4 MiB).
MAX_MANIFEST_SIZE = 4 << 20


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    platform: Optional[dict[str, Any]] = None
    annotations: dict[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Descriptor:
        try:
            digest, size = str(doc["digest"]), int(doc["size"])
            platform, annotations = doc.get("platform"), doc.get("annotations") or {}
            urls = doc.get("urls") or []
            if not (platform is None or isinstance(platform, dict)) or not isinstance(annotations, dict) \
                    or not isinstance(urls, list):
                raise TypeError("platform, annotations or urls of the wrong type")
            return cls(
                media_type=str(doc.get("mediaType", "")),
                digest=digest,
                size=size if size >= 0 else _negative(digest),
                platform=dict(platform) if platform else None,
                annotations={str(k): str(v) for k, v in annotations.items()},
                urls=tuple(str(u) for u in urls),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            raise errors.CtrError(f"malformed descriptor in manifest: {json.dumps(doc, default=str)[:200]}") from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.urls:
            out["urls"] = list(self.urls)
        return out

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    @property
    def is_manifest(self) -> bool:
        return self.media_type in MANIFEST_MEDIA_TYPES


@dataclass(frozen=True)
class Manifest:
    """A parsed image manifest (OCI or Docker schema 2)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    raw: bytes = field(repr=False, default=b"")

    @property
    def children(self) -> list[Descriptor]:
        return [self.config, *self.layers]


@dataclass(frozen=True)
class Index:
    """A parsed image index (OCI) or manifest list (Docker)."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    raw: bytes = field(repr=False, default=b"")

    @property
    def children(self) -> list[Descriptor]:
        return list(self.manifests)

    @property
    def platforms(self) -> list[str]:
        return [format_platform(m.platform) for m in self.manifests if m.platform]


def _negative(digest: str) -> int:
    raise errors.CtrError(f"descriptor {digest} has a negative size")


def media_type_of(data: bytes, header_type: str = "") -> str:
    """The media type of a manifest document: its own ``mediaType`` field, else the HTTP header, else guessed."""
    doc = _load(data)
    declared = str(doc.get("mediaType") or "")
    if declared:
        return declared
    if doc.get("schemaVersion") == 1:
        return MEDIA_DOCKER_MANIFEST_V1
    base = header_type.split(";", 1)[0].strip()
    if base and base not in ("application/json", "application/octet-stream", "text/plain"):
        return base
    if "manifests" in doc:
        return MEDIA_OCI_INDEX
    if "layers" in doc or "config" in doc:
        return MEDIA_OCI_MANIFEST
    return base


def _load(data: bytes, what: str = "") -> dict[str, Any]:
    where = f"the manifest of {what}" if what else "manifest"
    doc = load_json(data, where, error=errors.CtrError, hint="the registry sent something that is not an image "
                    "manifest; check the reference, or push the image again")
    if not isinstance(doc, dict):
        raise errors.CtrError(f"{where} is not a JSON object")
    return doc


def refuse_schema1(media_type: str, what: str) -> None:
    if media_type in SCHEMA1_MEDIA_TYPES:
        raise errors.NotSupported(
            f"{what} is a Docker schema 1 manifest, which ctr-magic does not pull",
            hint="schema 1 is deprecated; push the image again with a current client (docker, skopeo, buildah)",
        )


def parse(data: bytes, media_type: str, what: str) -> Manifest | Index:
    """Parse a manifest or index; refuse schema 1 and anything that is not an image."""
    refuse_schema1(media_type, what)
    doc = _load(data, what)
    if doc.get("schemaVersion") == 1:
        refuse_schema1(MEDIA_DOCKER_MANIFEST_V1, what)
    if media_type in INDEX_MEDIA_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise errors.CtrError(f"{what}: index has no 'manifests' list")
        return Index(media_type, tuple(_descriptor(m, what) for m in entries), data)
    if media_type in MANIFEST_MEDIA_TYPES:
        config, layers = doc.get("config"), doc.get("layers")
        if not isinstance(config, dict) or not isinstance(layers, list):
            raise errors.CtrError(f"{what}: manifest lacks 'config' or 'layers'")
        return Manifest(media_type, _descriptor(config, what), tuple(_descriptor(x, what) for x in layers), data)
    raise errors.NotSupported(f"{what} has media type {media_type!r}, which is not a container image")


def _descriptor(doc: Any, what: str) -> Descriptor:
    try:
        return Descriptor.from_dict(doc)
    except errors.CtrError as exc:
        raise type(exc)(f"{what}: {exc.message}", hint=exc.hint) from None


def _platform_score(entry: Descriptor, want: Platform) -> Optional[int]:
    """Higher is better; None means the entry cannot run on *want*."""
    plat = entry.platform
    if not plat:
        return 0  # no platform given: usable, but any explicit match wins
    if not want.matches(plat):
        return None
    score = 2
    if want.variant and plat.get("variant") == want.variant:
        score += 1
    return score


def select_manifest(index: Index, want: Platform, what: str) -> Descriptor:
    """The index entry for platform *want* (exact variant preferred); NotFound lists what there is."""
    best: Optional[Descriptor] = None
    best_score = -1
    for entry in index.manifests:
        if entry.media_type and entry.media_type not in MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES:
            continue  # attestations and other artifacts
        if (entry.annotations or {}).get("vnd.docker.reference.type") == "attestation-manifest":
            continue
        score = _platform_score(entry, want)
        if score is not None and score > best_score:
            best, best_score = entry, score
    if best is None:
        available = ", ".join(p for p in index.platforms if p) or "none"
        raise errors.NotFound(
            f"{what} has no manifest for platform {want}",
            hint=f"available platforms: {available}; choose one with platform=",
        )
    return best


def is_config_type(media_type: str) -> bool:
    return media_type in CONFIG_MEDIA_TYPES


__all__ = [
    "MANIFEST_ACCEPT",
    "MAX_MANIFEST_SIZE",
    "Descriptor",
    "Index",
    "Manifest",
    "is_config_type",
    "media_type_of",
    "parse",
    "refuse_schema1",
    "select_manifest",
]
