"""Pushing an image from containerd's content store to a registry.

Blobs the registry has already (checked with ``HEAD``) are skipped; the others stream from
``Content.Read`` into one upload each, a few at a time. Manifests follow their blobs, the root
(tagged) last. An index whose platforms are not all in the content store (the usual case after a
single-platform pull) is pushed as the host platform's manifest alone, as ``docker push`` does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from .. import errors
from ..constants import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES
from ..platforms import host_platform
from ..reference import Reference
from ..registry import ClientCache, Descriptor, RegistryClient, RegistryOptions
from ..registry.manifests import parse as parse_manifest
from ..registry.manifests import select_manifest
from ..types import LayerProgress
from .client import ContainerdClient
from .content import ContentStore
from .pb import images_pb2
from .progress import DONE, EXISTS, UPLOADING, WAITING, ProgressReporter

log = logging.getLogger(__name__)


class PushJob:
    def __init__(self, client: ContainerdClient, record: images_pb2.Image, target: Reference,
                 options: RegistryOptions, progress: Optional[Callable[[LayerProgress], None]] = None,
                 cache: Optional[ClientCache] = None) -> None:
        self.client = client
        self.record = record
        self.target = target
        self.options = options
        self.cache = cache
        self.content = ContentStore(client)
        self.reporter = ProgressReporter(str(target), progress)
        self.cancel = threading.Event()

    def _require_stored(self, desc: Descriptor) -> None:
        if not self.content.exists(desc.digest):
            raise errors.FailedPrecondition(
                f"cannot push {self.record.name}: blob {desc.digest} is not in the content store",
                hint="pull the image again before pushing it",
            )

    def _read(self, desc: Descriptor) -> bytes:
        self._require_stored(desc)
        return self.content.read(desc.digest)

    def _plan(self) -> tuple[Descriptor, list[tuple[Descriptor, bytes]], list[Descriptor]]:
        """(root, manifests to upload children-first, blobs to upload)."""
        target = self.record.target
        root = Descriptor(target.media_type, target.digest, target.size)
        what = f"image {self.record.name}"
        raw = self._read(root)
        doc = parse_manifest(raw, root.media_type, what)
        manifests: list[tuple[Descriptor, bytes]] = []
        blobs: dict[str, Descriptor] = {}
        if root.media_type in INDEX_MEDIA_TYPES:
            children = [m for m in doc.children if m.media_type in MANIFEST_MEDIA_TYPES]
            if all(self.content.exists(m.digest) for m in children) and children:
                for child in children:
                    manifests.append((child, self._read(child)))
                manifests.append((root, raw))
            else:
                chosen = select_manifest(doc, host_platform(), what)  # type: ignore[arg-type]
                log.info("%s: pushing only the %s manifest (other platforms are not stored)",
                         self.record.name, host_platform())
                root = Descriptor(chosen.media_type, chosen.digest, chosen.size)
                manifests.append((root, self._read(root)))
        else:
            manifests.append((root, raw))
        for desc, data in manifests:
            if desc.media_type in MANIFEST_MEDIA_TYPES:
                manifest = parse_manifest(data, desc.media_type, what)
                for child in manifest.children:
                    blobs.setdefault(child.digest, child)
        return root, manifests, list(blobs.values())

    def _push_blob(self, registry: RegistryClient, desc: Descriptor) -> None:
        repo = self.target.path
        self.reporter.post(desc.digest, desc.media_type, WAITING, 0, desc.size)
        if registry.blob_exists(repo, desc.digest):
            self.reporter.post(desc.digest, desc.media_type, EXISTS, desc.size, desc.size)
            return
        self._require_stored(desc)

        def chunks() -> Iterator[bytes]:
            sent = 0
            for chunk in self.content.chunks(desc.digest):
                if self.cancel.is_set():
                    raise errors.Interrupted(f"pushing {desc.digest}: cancelled")
                sent += len(chunk)
                self.reporter.post(desc.digest, desc.media_type, UPLOADING, sent, desc.size)
                yield chunk

        registry.upload_blob(repo, desc, chunks, cancel=self.cancel)
        self.reporter.post(desc.digest, desc.media_type, DONE, desc.size, desc.size)

    def run(self) -> str:
        root, manifests, blobs = self._plan()
        if self.target.digest and self.target.digest != root.digest:
            raise errors.InvalidArgument(
                f"cannot push {self.record.name} as {self.target}: the image's digest is {root.digest}")
        with RegistryClient(self.target.registry_host, self.options, cache=self.cache) as registry:
            workers = max(1, min(len(blobs), self.options.max_concurrent_downloads))
            with ThreadPoolExecutor(workers, thread_name_prefix="ctr-magic-push") as pool:
                futures = [pool.submit(self._push_blob, registry, blob) for blob in blobs]
                for future in futures:
                    future.add_done_callback(lambda _f: self.reporter.wake())
                try:
                    pending = set(futures)
                    while pending:
                        self.reporter.pump(timeout=1.0)
                        done = {f for f in pending if f.done()}
                        for future in done:
                            future.result()
                        pending -= done
                except BaseException:
                    self.cancel.set()
                    for future in futures:
                        future.cancel()
                    raise
            self.reporter.pump()
            for desc, data in manifests:
                reference = self.target.tag if desc.digest == root.digest and self.target.tag else desc.digest
                registry.put_manifest(self.target.path, reference, data, desc.media_type)
                self.reporter.post(desc.digest, desc.media_type, DONE, desc.size, desc.size)
            self.reporter.pump()
        log.info("pushed %s as %s (%s)", self.record.name, self.target, root.digest)
        return root.digest


def push_image(client: ContainerdClient, record: images_pb2.Image, target: Reference, options: RegistryOptions,
               *, progress: Optional[Callable[[LayerProgress], None]] = None,
               cache: Optional[ClientCache] = None) -> str:
    return PushJob(client, record, target, options, progress, cache).run()
