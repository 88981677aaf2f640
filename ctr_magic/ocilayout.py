"""Writing OCI image layouts (``oci-layout``, ``index.json``, ``blobs/sha256/...``) from file trees.

A layout written here can be pushed with ``skopeo copy oci:<dir>:<tag> docker://...``, imported
with ``import_image``, or compared with what containerd exports. Test and demo images built on
it live in :mod:`ctr_magic.testimages` and :mod:`ctr_magic.debian_image`.

Everything is deterministic: tar entries are sorted, mtime 0, uid/gid as given (root by
default), gzip headers carry no name and mtime 0, and JSON is written with sorted keys.
The same inputs (and the same zlib) always give the same digests.

Layers are streamed to disk while being hashed, so large layers never sit in memory.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from . import errors
from .atomicfile import atomic_output
from .constants import INDEX_MEDIA_TYPES, MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX, MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_MANIFEST
from .layertree import Dir, Entry, File, StreamFile, Symlink, Tree, Whiteout, add_tar_entry, sorted_entries
from .platforms import host_platform
from .registry.manifests import Descriptor

log = logging.getLogger(__name__)

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor
    diff_id: str
    created_by: str = ""

    @property
    def digest(self) -> str:
        return self.descriptor.digest


@dataclass
class ImageConfig:
    """The runtime part of an OCI image config."""

    env: list[str] = field(default_factory=lambda: [DEFAULT_PATH])
    entrypoint: list[str] | None = None
    cmd: list[str] | None = field(default_factory=lambda: ["/bin/sh"])
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    stop_signal: str = ""

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"Env": list(self.env)}
        if self.entrypoint is not None:
            d["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            d["Cmd"] = list(self.cmd)
        if self.working_dir:
            d["WorkingDir"] = self.working_dir
        if self.user:
            d["User"] = self.user
        if self.labels:
            d["Labels"] = dict(self.labels)
        if self.exposed_ports:
            d["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.stop_signal:
            d["StopSignal"] = self.stop_signal
        return d


@dataclass(frozen=True)
class BuiltImage:
    """An image (manifest or index) stored under ``tag`` in an OCI layout."""

    layout: Path
    tag: str
    descriptor: Descriptor

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    @property
    def is_index(self) -> bool:
        return self.descriptor.is_index

    @property
    def oci_ref(self) -> str:
        """The skopeo source reference, ``oci:<dir>:<tag>``."""
        return f"oci:{self.layout}:{self.tag}"


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _index_bytes(manifests: Sequence[Descriptor]) -> bytes:
    """An OCI image index over *manifests* (an index blob, or a layout's index.json)."""
    doc = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [m.to_dict() for m in manifests]}
    return _json_bytes(doc)


class _HashingWriter(io.RawIOBase):
    """Write-through to ``sink`` while counting bytes and hashing them."""

    def __init__(self, sink: BinaryIO | io.RawIOBase | gzip.GzipFile) -> None:
        super().__init__()
        self._sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.sha.update(b)
        self.size += len(b)
        self._sink.write(b)
        return len(b)

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


# --------------------------------------------------------------------------- layout


class OCILayout:
    """An OCI image layout directory (created if missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        self.blobs = self.path / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        marker = self.path / "oci-layout"
        if not marker.exists():
            marker.write_bytes(_json_bytes({"imageLayoutVersion": "1.0.0"}))
        if not (self.path / "index.json").exists():
            self._write_index_json([])
        self.layers: dict[str, Layer] = {}  # layers a builder wants to reuse, by a name it chooses

    # ---- blobs

    def blob_path(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or len(hexd) != 64:
            raise errors.InvalidArgument(f"unsupported digest {digest!r}")
        return self.blobs / hexd

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def read_json(self, digest: str) -> dict[str, object]:
        return json.loads(self.read_blob(digest))

    def write_blob(self, data: bytes, media_type: str) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        target = self.blob_path(digest)
        if not target.exists():
            with self._temp_blob() as (f, tmp):
                f.write(data)
                f.close()
                os.replace(tmp, target)
        return Descriptor(media_type=media_type, digest=digest, size=len(data))

    @contextlib.contextmanager
    def _temp_blob(self) -> Iterator[tuple[BinaryIO, str]]:
        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".tmp-")
        os.fchmod(fd, 0o644)
        f = os.fdopen(fd, "wb")
        try:
            yield f, tmp
        finally:
            f.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def add_layer(self, tree: Tree, *, created_by: str = "", compresslevel: int = 6) -> Layer:
        """Write ``tree`` as a gzip tar layer blob; returns its descriptor and diff_id."""
        t0 = time.monotonic()
        with self._temp_blob() as (f, tmp):
            compressed = _HashingWriter(f)
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=compresslevel, mtime=0)
            uncompressed = _HashingWriter(gz)
            with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                              copybufsize=1 << 20) as tar:
                for path, entry in sorted_entries(tree):
                    add_tar_entry(tar, path, entry)
            gz.close()
            f.close()
            target = self.blob_path(compressed.digest)
            if not target.exists():  # else the same blob is there already; _temp_blob removes tmp
                os.replace(tmp, target)
        desc = Descriptor(MEDIA_OCI_LAYER_GZIP, compressed.digest, compressed.size)
        log.debug(
            "layer %s: %d bytes (%d uncompressed) in %.2fs",
            desc.digest[:19],
            desc.size,
            uncompressed.size,
            time.monotonic() - t0,
        )
        return Layer(descriptor=desc, diff_id=uncompressed.digest, created_by=created_by)

    def add_image(
        self,
        layers: Sequence[Layer],
        config: ImageConfig | None = None,
        *,
        platform: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """Write config and manifest blobs; returns the manifest descriptor (with platform)."""
        plat = dict(platform) if platform else host_platform().to_oci()
        cfg = config or ImageConfig()
        config_doc: dict[str, object] = {
            "architecture": plat["architecture"],
            "os": plat["os"],
            "created": EPOCH,
            "config": cfg.to_dict(),
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [
                {"created": EPOCH, "created_by": layer.created_by or "ctr-magic imagebuild"} for layer in layers
            ],
        }
        if plat.get("variant"):
            config_doc["variant"] = plat["variant"]
        config_desc = self.write_blob(_json_bytes(config_doc), MEDIA_OCI_CONFIG)
        manifest: dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": config_desc.to_dict(),
            "layers": [layer.descriptor.to_dict() for layer in layers],
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        desc = self.write_blob(_json_bytes(manifest), MEDIA_OCI_MANIFEST)
        return Descriptor(desc.media_type, desc.digest, desc.size, platform=plat)

    def add_index(self, manifests: Sequence[Descriptor]) -> Descriptor:
        """Write an image index blob over ``manifests`` (each should carry a platform)."""
        return self.write_blob(_index_bytes(manifests), MEDIA_OCI_INDEX)

    # ---- index.json

    def _read_index_json(self) -> list[Descriptor]:
        doc = json.loads((self.path / "index.json").read_bytes())
        return [Descriptor.from_dict(m) for m in doc.get("manifests", [])]

    def _write_index_json(self, manifests: list[Descriptor]) -> None:
        with atomic_output(str(self.path / "index.json"), binary=True, mode=0o644) as fh:
            fh.write(_index_bytes(manifests))

    def tag(self, descriptor: Descriptor, tag: str) -> BuiltImage:
        """Point ``tag`` (``org.opencontainers.image.ref.name``) at ``descriptor`` in index.json."""
        if not tag or ":" in tag or "/" in tag:
            raise errors.InvalidArgument(f"invalid layout tag {tag!r}")
        keep = [m for m in self._read_index_json() if (m.annotations or {}).get(ANNOTATION_REF_NAME) != tag]
        tagged = Descriptor(
            descriptor.media_type,
            descriptor.digest,
            descriptor.size,
            platform=None if descriptor.media_type in INDEX_MEDIA_TYPES else descriptor.platform,
            annotations={**(descriptor.annotations or {}), ANNOTATION_REF_NAME: tag},
        )
        keep.append(tagged)
        keep.sort(key=lambda m: (m.annotations or {}).get(ANNOTATION_REF_NAME, ""))
        self._write_index_json(keep)
        return BuiltImage(self.path, tag, tagged)

    def tags(self) -> dict[str, Descriptor]:
        return {
            (m.annotations or {})[ANNOTATION_REF_NAME]: m
            for m in self._read_index_json()
            if ANNOTATION_REF_NAME in (m.annotations or {})
        }

    def resolve(self, tag: str) -> Descriptor:
        try:
            return self.tags()[tag]
        except KeyError:
            raise errors.NotFound(f"tag {tag!r} not found in OCI layout {self.path}") from None


__all__ = [
    "ANNOTATION_REF_NAME",
    "DEFAULT_PATH",
    "BuiltImage",
    "Descriptor",
    "Dir",
    "Entry",
    "File",
    "ImageConfig",
    "Layer",
    "OCILayout",
    "StreamFile",
    "Symlink",
    "Tree",
    "Whiteout",
]
