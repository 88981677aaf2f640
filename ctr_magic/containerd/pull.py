"""Pulling an image from a registry into containerd (containerd 1.6 has no server-side pull).

Resolve the reference, pick the platform's manifest, then write index, manifest and config with the
GC labels containerd's client sets; fetch the layers concurrently (bounded), each written through
``Content.Write`` with its expected digest and size; unpack each layer as soon as it and the ones
below it are in, while later layers still download; finally create or update the image record.
All of it happens under one lease, deleted at the end; on any failure or interrupt the workers are
cancelled, partial ingests aborted and no image record is written. Completed blobs stay in the
content store (unreferenced, so GC may collect them) and a rerun reuses whatever is still there.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Optional

from .. import errors
from ..constants import CONFIG_MEDIA_TYPES
from ..jsondoc import load_json
from ..platforms import Platform, format_platform, host_platform, parse_platform
from ..reference import Reference, parse_reference
from ..registry import (
    ClientCache,
    Descriptor,
    Index,
    Manifest,
    RegistryClient,
    RegistryOptions,
    parse,
    select_manifest,
)
from ..types import ImageInfo, PullImageOptions
from .client import ContainerdClient
from .content import ContentStore
from .convert import to_datetime
from .gclabels import children_labels, distribution_labels, distribution_source_key, merge_sources
from .imageinfo import record_image
from .ingest import BlobWriter, ingest, ref_key, write_bytes
from .leases import Lease
from .progress import DONE, DOWNLOADING, ERROR, EXISTS, WAITING, ProgressReporter
from .unpack import Unpacker

log = logging.getLogger(__name__)

#: How long a failed or interrupted pull waits for its workers to stop before cleaning up anyway.
WORKER_STOP_TIMEOUT = 10.0
#: How long a pull broken by containerd going away waits for it to come back to clean up (abort, unlease).
CLEANUP_WAIT = 20.0


def merge_blob_labels(content: ContentStore, digest: str, labels: dict[str, str], domain: str) -> None:
    """Add *labels* to an existing blob, merging its distribution-source list rather than replacing it."""
    info = content.info(digest)
    existing = dict(info.labels) if info is not None else {}
    wanted = dict(labels)
    key = distribution_source_key(domain)
    if key in wanted:
        merged = existing.get(key, "")
        for repo in wanted[key].split(","):
            merged = merge_sources(merged, repo)
        wanted[key] = merged
    changed = {k: v for k, v in wanted.items() if existing.get(k) != v}
    if changed:
        content.set_labels(digest, changed)


class PullJob:
    """One pull: ``PullJob(client, ref, opts, registry_options, default_snapshotter).run()``."""

    def __init__(
        self,
        client: ContainerdClient,
        ref: str,
        opts: PullImageOptions,
        registry_options: RegistryOptions,
        default_snapshotter: str,
        cache: Optional[ClientCache] = None,
    ) -> None:
        if not ref or not ref.strip():
            raise errors.InvalidArgument("image reference is empty", hint="give a name such as busybox:latest")
        self.client = client
        self.ref: Reference = parse_reference(ref)
        self.name = str(self.ref)
        self.opts = opts
        self.platform: Platform = parse_platform(opts.platform) if opts.platform else host_platform()
        self.snapshotter = opts.snapshotter or default_snapshotter
        self.registry_options = registry_options
        self.cache = cache
        self.content = ContentStore(client)
        self.reporter = ProgressReporter(self.name, opts.progress)
        self.cancel = threading.Event()
        self._writers: list[BlobWriter] = []
        self._writers_lock = threading.Lock()
        self._unpacker: Optional[Unpacker] = None
        self._futures: list[Future[Any]] = []
        self._pools: tuple[ThreadPoolExecutor, ...] = ()
        self.registry: RegistryClient  # set by run() for the duration of the pull
        self.lease: Lease
        self._deadline = time.monotonic() + opts.timeout if opts.timeout else None

    # -- entry point ----------------------------------------------------------------------------
    def run(self) -> ImageInfo:
        started = time.monotonic()
        with RegistryClient(self.ref.registry_host, self.registry_options, cache=self.cache) as registry, \
                Lease(self.client, "pull") as lease:
            self.registry = registry
            self.lease = lease
            try:
                info = self._pull()
            except BaseException as exc:
                if isinstance(exc, errors.Unavailable) and not self.client.wait_until_reachable(CLEANUP_WAIT):
                    log.warning("containerd at %s is gone; the pull's ingests and lease %s are left to expire",
                                self.client.address, lease.id)
                self._stop_workers()
                with contextlib.suppress(BaseException):
                    self.reporter.pump()  # let the caller see which blobs ended in "error"
                log.info("pull of %s failed after %.2fs: %s", self.name, time.monotonic() - started,
                         type(exc).__name__)
                raise
        log.info("pulled %s (%s) in %.2fs", self.name, info.id, time.monotonic() - started)
        return info

    # -- steps ----------------------------------------------------------------------------------
    def _pull(self) -> ImageInfo:
        what = f"image {self.name}"
        root_raw, root = self.registry.get_manifest(self.ref, cancel=self.cancel)
        self._check_deadline()
        doc = parse(root_raw, root.media_type, what)
        index: Optional[Index] = None
        manifest_raw, manifest_desc = root_raw, root
        if isinstance(doc, Index):
            index = doc
            chosen = select_manifest(index, self.platform, what)
            manifest_raw, fetched = self.registry.get_manifest(self.ref, chosen.digest, cancel=self.cancel)
            manifest_desc = Descriptor(chosen.media_type or fetched.media_type, chosen.digest, fetched.size)
            doc = parse(manifest_raw, manifest_desc.media_type, f"{what} ({self.platform})")
        if not isinstance(doc, Manifest):
            raise errors.NotSupported(f"{what}: nested indexes are not supported")
        manifest = doc
        if manifest.config.media_type not in CONFIG_MEDIA_TYPES:
            raise errors.NotSupported(f"{what} is not a container image (config type {manifest.config.media_type!r})",
                                      hint="pull artifacts like this with an OCI artifact tool such as oras")
        config_raw = self.registry.read_blob(self.ref.path, manifest.config, cancel=self.cancel)
        config = load_json(config_raw, f"{what}: image config {manifest.config.digest}", error=errors.CtrError)
        if not isinstance(config, dict):
            raise errors.CtrError(f"{what}: image config {manifest.config.digest} is not a JSON object")
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if self.opts.unpack and len(diff_ids) != len(manifest.layers):
            raise errors.CtrError(f"{what}: config lists {len(diff_ids)} diff IDs for {len(manifest.layers)} layers",
                                  hint="the image is inconsistent; rebuild or re-push it")
        if self.opts.unpack:
            self._unpacker = Unpacker(self.client, self.snapshotter, lease=self.lease.id)
            self._unpacker.check_snapshotter()

        dist = distribution_labels(self.ref.domain, self.ref.path)
        if index is not None:
            self._store_small(root, root_raw, {**children_labels(index.children), **dist})
        self._store_small(manifest_desc, manifest_raw, {**children_labels(manifest.children), **dist})
        self._store_small(manifest.config, config_raw, dist)
        self._fetch_and_unpack(manifest, diff_ids, dist)

        record = record_image(self.client, self.name, root)
        size = root.size + manifest.config.size + sum(layer.size for layer in manifest.layers)
        if index is not None:
            size += manifest_desc.size
        platforms = index.platforms if index is not None else [format_platform(config)]
        return ImageInfo(
            name=self.name, id=root.digest, tags=[self.name], size=size,
            created=to_datetime(record, "created_at"), platforms=platforms, labels=dict(record.labels),
            media_type=root.media_type,
        )  # fmt: skip

    def _store_small(self, desc: Descriptor, data: bytes, labels: dict[str, str]) -> None:
        self.reporter.post(desc.digest, desc.media_type, WAITING, 0, desc.size)
        written = write_bytes(self.client, ref_key(desc.media_type, desc.digest), desc.digest, data,
                              lease=self.lease.id, labels=labels)
        if not written:
            merge_blob_labels(self.content, desc.digest, labels, self.ref.domain)
        self.reporter.post(desc.digest, desc.media_type, DONE if written else EXISTS, desc.size, desc.size)

    def _fetch_layer(self, layer: Descriptor, dist: dict[str, str]) -> None:
        def source(offset: int) -> Any:
            return self.registry.iter_blob(self.ref.path, layer, offset=offset, verify=False, cancel=self.cancel)

        def progress(done: int) -> None:
            self.reporter.post(layer.digest, layer.media_type, DOWNLOADING, done, layer.size)

        def opened(writer: BlobWriter) -> None:
            with self._writers_lock:
                self._writers.append(writer)

        self.reporter.post(layer.digest, layer.media_type, DOWNLOADING, 0, layer.size)
        try:
            written = ingest(self.client, ref_key(layer.media_type, layer.digest), layer.digest, layer.size,
                             source, lease=self.lease.id, labels=dist, on_progress=progress, cancel=self.cancel,
                             on_open=opened)
            if not written:
                merge_blob_labels(self.content, layer.digest, dist, self.ref.domain)
        except BaseException:
            self.reporter.post(layer.digest, layer.media_type, ERROR, 0, layer.size)
            raise
        self.reporter.post(layer.digest, layer.media_type, DONE if written else EXISTS, layer.size, layer.size)

    def _fetch_and_unpack(self, manifest: Manifest, diff_ids: list[str], dist: dict[str, str]) -> None:
        layers = list(manifest.layers)
        unique: dict[str, Descriptor] = {}
        for layer in layers:
            unique.setdefault(layer.digest, layer)
            self.reporter.post(layer.digest, layer.media_type, WAITING, 0, layer.size)
        workers = max(1, min(len(unique), self.registry_options.max_concurrent_downloads))
        fetch_pool = ThreadPoolExecutor(workers, thread_name_prefix="ctr-magic-fetch")
        unpack_pool = ThreadPoolExecutor(1, thread_name_prefix="ctr-magic-unpack")
        self._pools = (fetch_pool, unpack_pool)
        fetched: dict[str, Future[Any]] = {}
        for digest, layer in unique.items():
            future = fetch_pool.submit(self._fetch_layer, layer, dist)
            future.add_done_callback(lambda _f: self.reporter.wake())
            fetched[digest] = future
        self._futures = list(fetched.values())
        if self._unpacker is not None:
            unpacker = self._unpacker

            def wait_for(i: int) -> None:
                fetched[layers[i].digest].result()

            def on_layer(i: int, state: str) -> None:
                self.reporter.post(layers[i].digest, layers[i].media_type, state, layers[i].size, layers[i].size)

            future = unpack_pool.submit(unpacker.unpack_all, layers, diff_ids, manifest.config.digest,
                                        wait_for=wait_for, on_layer=on_layer)
            future.add_done_callback(lambda _f: self.reporter.wake())
            self._futures.append(future)
        pending = set(self._futures)
        while pending:
            self.reporter.pump(timeout=self._wait_slice())
            self._check_deadline()
            done = {f for f in pending if f.done()}
            for future in done:
                future.result()  # re-raises a worker's error
            pending -= done
        self.reporter.pump()
        fetch_pool.shutdown()
        unpack_pool.shutdown()

    # -- deadline and cleanup -------------------------------------------------------------------
    def _wait_slice(self) -> float:
        if self._deadline is None:
            return 1.0
        return max(0.0, min(1.0, self._deadline - time.monotonic()))

    def _check_deadline(self) -> None:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise errors.Interrupted(f"pulling {self.name} timed out after {self.opts.timeout:g}s",
                                     hint="raise PullImageOptions.timeout, or check the registry")

    def _stop_workers(self) -> None:
        """Cancel every worker, wait (bounded) for them, and abort the ingests they left open."""
        self.cancel.set()
        with self._writers_lock:
            writers = list(self._writers)
        for writer in writers:
            writer.cancel()
        if self._unpacker is not None:
            self._unpacker.cancel()
        if self._futures:
            wait(self._futures, timeout=WORKER_STOP_TIMEOUT)
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)
        with self._writers_lock:
            writers = list(self._writers)
        for writer in writers:
            if writer.opened and not writer.committed:
                writer.abort()


def pull_image(
    client: ContainerdClient,
    ref: str,
    opts: Optional[PullImageOptions],
    registry_options: RegistryOptions,
    default_snapshotter: str,
    cache: Optional[ClientCache] = None,
) -> ImageInfo:
    return PullJob(client, ref, opts or PullImageOptions(), registry_options, default_snapshotter, cache).run()
