"""Image records: writing them, and turning them into :class:`~ctr_magic.types.ImageInfo`.

``ImageInfo.size`` is what ``ctr images ls`` shows as SIZE: the compressed bytes the host platform
needs — index (if any), manifest, config and layers.
"""

from __future__ import annotations

import logging
from typing import Optional

from .. import errors
from ..constants import INDEX_MEDIA_TYPES
from ..platforms import Platform, format_platform
from ..registry.manifests import Descriptor
from ..types import ImageInfo
from .client import ContainerdClient
from .convert import to_datetime
from .imagestore import ImageStore
from .pb import descriptor_pb2, images_pb2, images_pb2_grpc

log = logging.getLogger(__name__)


def record_image(client: ContainerdClient, name: str, target: Descriptor,
                 labels: Optional[dict[str, str]] = None) -> images_pb2.Image:
    """Create the image record, or point an existing one at *target* (as containerd's client does)."""
    stub = client.stub(images_pb2_grpc.ImagesStub)
    image = images_pb2.Image(
        name=name,
        labels=labels or {},
        target=descriptor_pb2.Descriptor(media_type=target.media_type, digest=target.digest, size=target.size),
    )
    for _ in range(3):
        try:
            return client.call(stub.Create, images_pb2.CreateImageRequest(image=image),
                               what=f"creating image {name}").image
        except errors.AlreadyExists:
            pass
        try:
            return client.call(stub.Update, images_pb2.UpdateImageRequest(image=image),
                               what=f"updating image {name}").image
        except errors.NotFound:
            continue  # removed in between: create again
    raise errors.CtrError(f"could not record image {name}: it keeps changing underneath")


def image_info(store: ImageStore, record: images_pb2.Image, platform: Optional[Platform] = None) -> ImageInfo:
    """ImageInfo for a stored record; falls back to the record alone when content is missing."""
    target = record.target
    info = ImageInfo(
        name=record.name, id=target.digest, tags=[record.name], size=target.size,
        created=to_datetime(record, "created_at"), labels=dict(record.labels), media_type=target.media_type,
    )  # fmt: skip
    content = store.content
    try:
        manifest_digest, manifest, platforms = store.manifest_for(target.digest, target.media_type, platform)
        config_desc = manifest.get("config") or {}
        size = target.size + int(config_desc.get("size", 0))
        size += sum(int(layer.get("size", 0)) for layer in manifest.get("layers", []))
        if target.media_type in INDEX_MEDIA_TYPES or manifest_digest != target.digest:
            found = content.info(manifest_digest)
            size += found.size if found is not None else 0
        if not platforms:
            platforms = [format_platform(content.read_json(config_desc["digest"]))]
        info.size = size
        info.platforms = [p for p in platforms if p]
    except (errors.CtrError, KeyError, TypeError, ValueError) as exc:
        log.debug("image %s: content incomplete (%s); showing the record only", record.name, exc)
        try:
            doc = content.read_json(target.digest)
            info.platforms = [format_platform(m.get("platform")) for m in doc.get("manifests", [])
                              if m.get("platform")]
        except errors.CtrError:
            pass
    return info
