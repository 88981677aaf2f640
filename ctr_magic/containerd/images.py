"""Image methods of DefaultService: pull, get, list, delete, tag, push, import and export.

Thin: the work lives in pull.py, unpack.py, push.py, importexport.py (import) and export.py. Registry settings come
from :attr:`ImagesPart.registry_options` (default: ``RegistryOptions.from_env()``, which reads
``$CTR_MAGIC_INSECURE_REGISTRIES``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import BinaryIO, Optional, Union

from .. import errors
from ..reference import normalize, parse_reference
from ..registry import ClientCache, Descriptor, RegistryOptions
from ..types import DeleteImageOptions, ImageInfo, LayerProgress, PullImageOptions
from .client import ContainerdClient
from .imageinfo import image_info, record_image
from .imagestore import ImageStore
from .pb import images_pb2, images_pb2_grpc

log = logging.getLogger(__name__)


class ImagesPart:
    """Image methods of the Service contract, on the service's image store."""

    def __init__(self, client: ContainerdClient, images: ImageStore, *, snapshotter: str) -> None:
        self.client = client
        self.images = images
        self.snapshotter = snapshotter
        self.registry_options = RegistryOptions.from_env()
        self._registry_cache = ClientCache()  # registry clients (and their tokens) reused across pulls

    # -- the contract ---------------------------------------------------------------------------
    def pull_image(self, ref: str, opts: Optional[PullImageOptions] = None) -> ImageInfo:
        """Pull *ref* from its registry (and unpack it unless ``opts.unpack`` is False)."""
        from .pull import pull_image

        return pull_image(self.client, ref, opts, self.registry_options, self.snapshotter, self._registry_cache)

    def get_image(self, ref: str) -> ImageInfo:
        """The stored image named *ref* (exact, without ``docker.io/library/``, then by suffix)."""
        return image_info(self.images, self.images.find_record(ref))

    def list_images(self) -> list[ImageInfo]:
        return [image_info(self.images, record) for record in self.images.records()]

    def delete_image(self, ref: str, opts: Optional[DeleteImageOptions] = None) -> None:
        """Delete the image record; with ``synchronous=True``, return after containerd's GC ran."""
        record = self.images.find_record(ref)
        stub = self.client.stub(images_pb2_grpc.ImagesStub)
        sync = bool(opts and opts.synchronous)
        self.client.call(stub.Delete, images_pb2.DeleteImageRequest(name=record.name, sync=sync),
                         what=f"deleting image {record.name}", timeout=300.0 if sync else 60.0)

    # -- extras ---------------------------------------------------------------------------------
    def tag_image(self, src: str, dst: str) -> ImageInfo:
        """Give the image *src* a second name *dst* (normalised); an existing *dst* is repointed."""
        if not dst:
            raise errors.InvalidArgument("new image name is empty", hint="e.g. tag_image('busybox', 'mybox:1')")
        record = self.images.find_record(src)
        name = normalize(dst)
        target = record.target
        record_image(self.client, name, Descriptor(target.media_type, target.digest, target.size),
                     labels=dict(record.labels))
        return self.get_image(name)

    def push_image(self, ref: str, *, dest: str = "",
                   progress: Optional[Callable[[LayerProgress], None]] = None) -> str:
        """Push the stored image *ref* to its registry (or to *dest*); returns the pushed manifest digest."""
        from .push import push_image

        record = self.images.find_record(ref)
        target = parse_reference(dest) if dest else parse_reference(record.name)
        return push_image(self.client, record, target, self.registry_options, progress=progress,
                          cache=self._registry_cache)

    def import_image(self, source: Union[str, BinaryIO], *, name: str = "",
                     unpack: bool = True) -> list[ImageInfo]:
        """Import an OCI image-layout tar or a ``docker save`` tar (path or binary stream)."""
        from .importexport import import_archive

        records = import_archive(self.client, source, name=name, snapshotter=self.snapshotter, unpack=unpack)
        return [image_info(self.images, record) for record in records]

    def export_image(self, refs: list[str], dest: Union[str, BinaryIO]) -> None:
        """Write the images *refs* to an OCI image-layout tar (with a Docker ``manifest.json``)."""
        from .export import export_archive

        if isinstance(refs, str):
            refs = [refs]
        if not refs:
            raise errors.InvalidArgument("no image to export", hint="give one or more image names")
        records = [self.images.find_record(ref) for ref in refs]
        export_archive(self.client, records, dest)
