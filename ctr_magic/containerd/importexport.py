"""Import OCI image-layout tars and ``docker save`` tars (export is in :mod:`.export`).

Import streams the tar once: every blob goes straight into containerd's content store (blobs under
``blobs/<alg>/<hex>`` with their digest checked by containerd, other files hashed on the way), then
manifests for ``docker save`` images are written, GC labels set, records created and the host
platform unpacked — all under one lease. Image names come from ``io.containerd.image.name``, then
``org.opencontainers.image.ref.name`` (a bare tag is put under *name*, or ``import-<date>`` as ctr
does), or the ``RepoTags`` of a ``docker save`` tar.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Any, BinaryIO, Optional, Union

from .. import errors
from ..constants import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_DOCKER_CONFIG,
    MEDIA_DOCKER_LAYER,
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_DOCKER_MANIFEST,
)
from ..platforms import Platform, host_platform
from ..reference import normalize, parse_reference
from ..registry.manifests import Descriptor
from .client import ContainerdClient
from .content import ContentStore
from .gclabels import children_labels
from .imageinfo import record_image
from .imagestore import ImageStore
from .ingest import BlobWriter, ingest, write_bytes
from .leases import Lease
from .pb import images_pb2
from .unpack import Unpacker

log = logging.getLogger(__name__)

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
_METADATA_FILES = frozenset({"oci-layout", "index.json", "manifest.json", "repositories"})
_JSON_LIMIT = 20 << 20
_CHUNK = 1 << 20

Source = Union[str, "os.PathLike[str]", BinaryIO, IO[bytes]]


# --------------------------------------------------------------------------- import


@dataclass
class _Archive:
    """What the tar held: metadata files in memory, blobs (path -> descriptor) in containerd."""

    metadata: dict[str, bytes] = field(default_factory=dict)
    blobs: dict[str, Descriptor] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    magic: dict[str, bytes] = field(default_factory=dict)  # first bytes of each blob, for compression


def _clean(name: str) -> str:
    return posixpath.normpath(name.lstrip("/")).removeprefix("./")


def _read_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while True:
        chunk = handle.read(_CHUNK)
        if not chunk:
            return
        yield chunk


def _ingest_member(client: ContainerdClient, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str,
                   lease: str, archive: _Archive) -> None:
    handle = tar.extractfile(member)
    if handle is None:
        return
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "blobs":
        digest = f"{parts[1]}:{parts[2]}"
        head: list[bytes] = []

        def source(offset: int) -> Iterator[bytes]:
            if offset:
                handle.read(offset)
            for chunk in _read_chunks(handle):
                if not head:
                    head.append(chunk[:8])
                yield chunk

        ingest(client, f"tar-{name}", digest, member.size, source, lease=lease)
        archive.blobs[name] = Descriptor("", digest, member.size)
        archive.magic[name] = head[0] if head else b""
        return
    # A file named by path only (docker save): hash it while it streams into containerd.
    writer = BlobWriter(client, f"tar-{name}", "", member.size, lease=lease)
    writer.open()
    hasher = hashlib.sha256()
    first = b""
    try:
        def hashed() -> Iterator[bytes]:
            nonlocal first
            for chunk in _read_chunks(handle):
                if not first:
                    first = chunk[:8]
                hasher.update(chunk)
                yield chunk

        writer.write(hashed())
        writer.digest = "sha256:" + hasher.hexdigest()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    archive.blobs[name] = Descriptor("", writer.digest, member.size)
    archive.magic[name] = first


def _read_archive(client: ContainerdClient, source: Source, lease: str) -> _Archive:
    archive = _Archive()
    with contextlib.ExitStack() as stack:
        if isinstance(source, (str, os.PathLike)):
            try:
                fileobj: IO[bytes] = stack.enter_context(open(source, "rb"))
            except FileNotFoundError:
                raise errors.NotFound(f"image archive {os.fspath(source)!r} does not exist") from None
        else:
            fileobj = source
        try:
            tar = stack.enter_context(tarfile.open(fileobj=fileobj, mode="r|*"))
            for member in tar:
                name = _clean(member.name)
                if member.issym():
                    archive.symlinks[name] = _clean(posixpath.join(posixpath.dirname(name), member.linkname))
                    continue
                if not member.isfile():
                    continue
                if name in _METADATA_FILES:
                    if member.size > _JSON_LIMIT:
                        raise errors.InvalidArgument(f"image archive: {name} is larger than {_JSON_LIMIT} bytes")
                    handle = tar.extractfile(member)
                    archive.metadata[name] = handle.read() if handle else b""
                    continue
                if name.endswith("/VERSION") or name.endswith("/json"):
                    continue  # legacy docker v1 metadata nobody reads
                _ingest_member(client, tar, member, name, lease, archive)
        except tarfile.TarError as exc:
            raise errors.InvalidArgument(f"image archive is not a readable tar file ({exc})",
                                         hint="give an OCI image-layout tar or a `docker save` tar") from None
    for name, target in archive.symlinks.items():
        if target in archive.blobs:
            archive.blobs[name] = archive.blobs[target]
            archive.magic[name] = archive.magic.get(target, b"")
    return archive


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise errors.InvalidArgument(f"image archive: {what} is not valid JSON") from None


def _import_name(annotations: dict[str, str], base: str, today: str) -> str:
    name = annotations.get(ANNOTATION_IMAGE_NAME, "")
    if name:
        return name
    ref = annotations.get(ANNOTATION_REF_NAME, "")
    if not ref:
        return normalize(base) if base else ""
    if any(ch in ref for ch in "/:@"):
        return normalize(ref)
    if base:
        return normalize(f"{parse_reference(base).name}:{ref}")
    return f"import-{today}:{ref}"


def _label_tree(content: ContentStore, desc: Descriptor) -> None:
    """Put children GC labels on an index or manifest (and below), as containerd's import does."""
    if desc.media_type not in INDEX_MEDIA_TYPES | MANIFEST_MEDIA_TYPES or not content.exists(desc.digest):
        return
    doc = content.read_json(desc.digest)
    if desc.media_type in INDEX_MEDIA_TYPES or "manifests" in doc:
        children = [Descriptor.from_dict(m) for m in doc.get("manifests", [])]
    else:
        children = [Descriptor.from_dict(doc["config"]), *(Descriptor.from_dict(x) for x in doc.get("layers", []))]
    labels = children_labels(children)
    if labels:
        content.set_labels(desc.digest, labels)
    for child in children:
        if child.media_type in INDEX_MEDIA_TYPES | MANIFEST_MEDIA_TYPES:
            _label_tree(content, child)


def _docker_manifests(client: ContainerdClient, archive: _Archive, lease: str,
                      base: str) -> list[tuple[str, Descriptor]]:
    entries = _json(archive.metadata["manifest.json"], "manifest.json")
    if not isinstance(entries, list):
        raise errors.InvalidArgument("image archive: manifest.json is not a list")
    out: list[tuple[str, Descriptor]] = []
    for entry in entries:
        config_path = _clean(str(entry.get("Config", "")))
        if config_path not in archive.blobs:
            raise errors.InvalidArgument(f"image archive: config {config_path!r} named in manifest.json is missing")
        config = archive.blobs[config_path]
        layers = []
        for path in entry.get("Layers") or []:
            path = _clean(str(path))
            if path not in archive.blobs:
                raise errors.InvalidArgument(f"image archive: layer {path!r} named in manifest.json is missing")
            blob = archive.blobs[path]
            # A blob the tar did not stream (it was stored already): read its first bytes.
            magic = archive.magic.get(path) or ContentStore(client).read(blob.digest, size=8)
            gzipped = magic.startswith(b"\x1f\x8b")
            media_type = MEDIA_DOCKER_LAYER_GZIP if gzipped else MEDIA_DOCKER_LAYER
            layers.append(Descriptor(media_type, blob.digest, blob.size))
        config_desc = Descriptor(MEDIA_DOCKER_CONFIG, config.digest, config.size)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_DOCKER_MANIFEST,
            "config": config_desc.to_dict(),
            "layers": [layer.to_dict() for layer in layers],
        }
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        write_bytes(client, f"manifest-{digest}", digest, raw, lease=lease,
                    labels=children_labels([config_desc, *layers]))
        desc = Descriptor(MEDIA_DOCKER_MANIFEST, digest, len(raw))
        tags = [str(t) for t in entry.get("RepoTags") or []]
        names = [normalize(t) for t in tags] or ([normalize(base)] if base else [])
        if not names:
            log.warning("image archive: manifest %s has no RepoTags and no name was given; not recorded", digest)
        out.extend((name, desc) for name in names)
    return out


def _oci_manifests(archive: _Archive, base: str) -> list[tuple[str, Descriptor]]:
    layout = _json(archive.metadata["oci-layout"], "oci-layout")
    if layout.get("imageLayoutVersion") != "1.0.0":
        raise errors.NotSupported(f"image archive: OCI layout version {layout.get('imageLayoutVersion')!r}")
    if "index.json" not in archive.metadata:
        raise errors.InvalidArgument("image archive: OCI layout without index.json")
    index = _json(archive.metadata["index.json"], "index.json")
    today = date.today().isoformat()
    out = []
    for entry in index.get("manifests") or []:
        desc = Descriptor.from_dict(entry)
        name = _import_name(desc.annotations, base, today)
        if not name:
            log.warning("image archive: manifest %s has no name and no name was given; not recorded", desc.digest)
            continue
        out.append((name, Descriptor(desc.media_type, desc.digest, desc.size)))
    return out


def _unpack(client: ContainerdClient, store: ImageStore, desc: Descriptor, snapshotter: str, lease: str,
            platform: Platform) -> None:
    try:
        _, manifest, _ = store.manifest_for(desc.digest, desc.media_type, platform)
    except errors.NotFound as exc:
        log.info("not unpacking %s: %s", desc.digest, exc)
        return
    config = store.content.read_json(manifest["config"]["digest"])
    layers = [Descriptor.from_dict(layer) for layer in manifest.get("layers", [])]
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    Unpacker(client, snapshotter, lease=lease).unpack_all(layers, diff_ids, manifest["config"]["digest"])


def import_archive(client: ContainerdClient, source: Source, *, name: str = "", snapshotter: str,
                   unpack: bool = True, platform: Optional[Platform] = None) -> list[images_pb2.Image]:
    """Import every image of the tar *source*; returns the image records created or updated."""
    if name:
        parse_reference(name)  # fail before reading anything
    store = ImageStore(client)
    with Lease(client, "import") as lease:
        archive = _read_archive(client, source, lease.id)
        if "oci-layout" in archive.metadata:
            named = _oci_manifests(archive, name)
        elif "manifest.json" in archive.metadata:
            named = _docker_manifests(client, archive, lease.id, name)
        else:
            raise errors.InvalidArgument("image archive has neither oci-layout nor manifest.json",
                                         hint="give an OCI image-layout tar or a `docker save` tar")
        if not named:
            raise errors.InvalidArgument("image archive names no image",
                                         hint="pass name= to give the imported image a name")
        records = []
        done: set[str] = set()
        for image_name, desc in named:
            if desc.digest not in done:
                _label_tree(store.content, desc)
                if unpack:
                    _unpack(client, store, desc, snapshotter, lease.id, platform or host_platform())
                done.add(desc.digest)
            records.append(record_image(client, image_name, desc))
    return records


__all__ = ["ANNOTATION_IMAGE_NAME", "Source", "import_archive"]
