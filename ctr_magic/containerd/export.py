"""Export images as OCI image-layout tars.

Export writes ``oci-layout``, ``index.json`` (one entry per image, annotated with its name and tag),
the blobs the content store holds for each image, and a Docker-style ``manifest.json`` for the host
platform so that ``docker load`` accepts the archive as well as ``ctr images import``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tarfile
from typing import IO, Any, Optional

from .. import errors
from ..atomicfile import atomic_output
from ..constants import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_OCI_INDEX,
)
from ..platforms import host_platform
from ..reference import parse_reference
from ..registry.manifests import Descriptor
from .client import ContainerdClient
from .content import ContentStore
from .imagestore import ImageStore
from .importexport import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Source
from .pb import images_pb2

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


class _ContentReader(io.RawIOBase):
    """A read-only file over ``Content.Read`` (streamed, never all in memory)."""

    def __init__(self, content: ContentStore, digest: str) -> None:
        super().__init__()
        self._chunks = content.chunks(digest)
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = memoryview(chunk)
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def close(self) -> None:
        self._chunks.close()
        super().close()


def _blob_path(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"blobs/{algorithm}/{hexdigest}"


def _collect(store: ImageStore, desc: Descriptor, name: str, out: dict[str, int]) -> None:
    """Add *desc* and what it references (as far as the content store has it) to *out* (digest -> size)."""
    content = store.content
    info = content.info(desc.digest)
    if info is None:
        raise errors.FailedPrecondition(f"image {name}: content {desc.digest} is missing",
                                        hint="pull the image again before exporting it")
    out[desc.digest] = info.size
    if desc.media_type in INDEX_MEDIA_TYPES:
        for entry in content.read_json(desc.digest).get("manifests", []):
            child = Descriptor.from_dict(entry)
            if content.exists(child.digest):
                _collect(store, child, name, out)
    elif desc.media_type in MANIFEST_MEDIA_TYPES:
        manifest = content.read_json(desc.digest)
        for entry in [manifest["config"], *manifest.get("layers", [])]:
            child = Descriptor.from_dict(entry)
            if not content.exists(child.digest):
                raise errors.FailedPrecondition(
                    f"image {name}: blob {child.digest} is not in the content store",
                    hint="pull the image again (all layers) before exporting it",
                )
            out[child.digest] = child.size


def _docker_entry(store: ImageStore, record: images_pb2.Image) -> Optional[dict[str, Any]]:
    try:
        _, manifest, _ = store.manifest_for(record.target.digest, record.target.media_type, host_platform())
    except errors.CtrError:
        return None
    try:
        tag = parse_reference(record.name).familiar()
    except errors.InvalidArgument:
        tag = record.name
    return {
        "Config": _blob_path(manifest["config"]["digest"]),
        "RepoTags": [tag],
        "Layers": [_blob_path(layer["digest"]) for layer in manifest.get("layers", [])],
    }


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _write_tar(client: ContainerdClient, store: ImageStore, records: list[images_pb2.Image],
               fileobj: IO[bytes]) -> None:
    blobs: dict[str, int] = {}
    entries = []
    docker = []
    for record in records:
        target = Descriptor(record.target.media_type, record.target.digest, record.target.size)
        _collect(store, target, record.name, blobs)
        annotations = {ANNOTATION_IMAGE_NAME: record.name}
        with contextlib.suppress(errors.InvalidArgument):
            ref = parse_reference(record.name)
            if ref.tag:
                annotations[ANNOTATION_REF_NAME] = ref.tag
        entries.append(Descriptor(target.media_type, target.digest, target.size, annotations=annotations).to_dict())
        entry = _docker_entry(store, record)
        if entry is not None:
            docker.append(entry)
    index = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": entries}
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for digest, size in blobs.items():
            info = tarfile.TarInfo(_blob_path(digest))
            info.size = size
            info.mode = 0o444
            with contextlib.closing(_ContentReader(store.content, digest)) as reader:
                tar.addfile(info, io.BufferedReader(reader, _CHUNK))
        _add_bytes(tar, "index.json", json.dumps(index, separators=(",", ":")).encode())
        if docker:
            _add_bytes(tar, "manifest.json", json.dumps(docker, separators=(",", ":")).encode())


def export_archive(client: ContainerdClient, records: list[images_pb2.Image], dest: Source) -> None:
    """Write *records* to *dest* (a path, written atomically, or a writable binary stream)."""
    store = ImageStore(client)
    if not isinstance(dest, (str, os.PathLike)):
        _write_tar(client, store, records, dest)
        return
    with atomic_output(os.fspath(dest), binary=True) as out:
        _write_tar(client, store, records, out)


__all__ = ["export_archive"]
