"""Commit a container to a new image, as ``docker commit`` / ``nerdctl commit`` do.

1. Pause the task if it runs (resumed afterwards, whatever happens), so the files hold still.
2. Diff the container's snapshot against the image's top layer (a temporary View) through the
   Diff service: containerd writes the change as a gzip tar layer into the content store and
   labels it with its uncompressed digest (``containerd.io/uncompressed``).
3. Write a new config (diff_ids + history entry, optional new Cmd/Env) and a manifest listing the
   image's layers plus the new one, with the GC labels containerd's client sets.
4. Unpack the new layer onto the image's snapshot chain (so containers start from it at once),
   then create the image record.

Everything is made under one lease: if anything fails, the lease goes and garbage collection
removes what was made; nothing is referenced until the image record exists.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import secrets
from datetime import datetime, timezone
from typing import Any, Optional

from .. import errors
from ..constants import (
    LABEL_UNCOMPRESSED,
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_CONFIG,
    MEDIA_OCI_LAYER,
    MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_MANIFEST,
    VIEW_SNAPSHOT_PREFIX,
)
from ..reference import normalize
from ..registry.manifests import Descriptor
from ..types import ImageInfo, MountInfo
from .gclabels import children_labels, snapshot_label
from .imageinfo import record_image
from .imagestore import ResolvedImage, chain_ids
from .ingest import ref_key, write_bytes
from .leases import Lease
from .pb import descriptor_pb2, diff_pb2, diff_pb2_grpc, images_pb2, images_pb2_grpc, mount_pb2, task_pb2, tasks_pb2
from .spec import merge_env, to_json_bytes
from .unpack import Unpacker

log = logging.getLogger(__name__)

_DIFF_TIMEOUT = 30 * 60.0


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _pb_mounts(mounts: list[MountInfo]) -> list[mount_pb2.Mount]:
    return [mount_pb2.Mount(type=m.type, source=m.source, options=list(m.options)) for m in mounts]


def diff_layer(service: Any, left: list[MountInfo], right: list[MountInfo], *, lease: str, what: str, ref: str,
               media_type: str = MEDIA_OCI_LAYER_GZIP) -> tuple[Descriptor, str]:
    """The change from *left* to *right* (mounts) as a layer blob in the content store, written by the
    Diff service under *lease*: (descriptor, diff_id). An uncompressed layer is its own diff_id."""
    client = service.client
    stub = client.stub(diff_pb2_grpc.DiffStub)
    resp = client.call(stub.Diff, diff_pb2.DiffRequest(left=_pb_mounts(left), right=_pb_mounts(right),
                                                       media_type=media_type, ref=ref),
                       what=what, lease=lease, timeout=_DIFF_TIMEOUT)
    info = service.content.info(resp.diff.digest)
    diff_id = info.labels.get(LABEL_UNCOMPRESSED, "") if info is not None else ""
    if not diff_id and media_type == MEDIA_OCI_LAYER:
        diff_id = resp.diff.digest
    if not diff_id:
        raise errors.CtrError(f"{what}: the layer {resp.diff.digest} has no {LABEL_UNCOMPRESSED} label")
    layer = Descriptor(media_type=resp.diff.media_type or media_type, digest=resp.diff.digest, size=int(resp.diff.size))
    return layer, diff_id


def new_config(base: dict[str, Any], diff_id: str, *, created: str, created_by: str, message: str,
               cmd: Optional[list[str]], env: Optional[list[str]], author: str = "") -> dict[str, Any]:
    """The committed image's config: the base config plus one layer and one history entry."""
    config = copy.deepcopy(base)
    config["created"] = created
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs.setdefault("type", "layers")
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), diff_id]
    entry: dict[str, Any] = {"created": created, "created_by": created_by}
    if message:
        entry["comment"] = message
    if author:
        entry["author"] = author
        config["author"] = author
    config["history"] = [*config.get("history", []), entry]
    runtime = config.setdefault("config", {})
    if cmd is not None:
        runtime["Cmd"] = list(cmd)
    if env is not None:
        runtime["Env"] = merge_env(list(runtime.get("Env") or []), list(env))
    return config


class Committer:
    """One commit of one container (see module docstring). Used by ``commit_container``."""

    def __init__(self, service: Any, container_id: str, image_ref: str, *, cmd: Optional[list[str]],
                 env: Optional[list[str]], message: str, replace: bool, author: str = "") -> None:
        self.svc = service
        self.client = service.client
        self.container_id = container_id
        self.name = normalize(image_ref)
        self.cmd = cmd
        self.env = env
        self.message = message
        self.author = author
        self.replace = replace

    # -- steps -------------------------------------------------------------------------------------
    def run(self) -> ImageInfo:
        record = self.svc.container_record(self.container_id)
        if not record.snapshot_key:
            raise errors.FailedPrecondition(f"container {self.container_id!r} has no snapshot to commit")
        if not self.replace and self._image_exists():
            raise errors.AlreadyExists(f"image {self.name!r} already exists; nothing was committed",
                                       hint="choose another name, or pass replace=True to move the name")
        snapshotter = record.snapshotter or self.svc.snapshotter
        try:
            base = self.svc.images.resolve(record.image)
        except errors.NotFound:
            raise errors.FailedPrecondition(
                f"container {self.container_id!r} was created from image {record.image!r}, which is gone; "
                "its layers are the base of the commit", hint=f"pull {record.image} again") from None
        lease = Lease(self.client, "commit")
        lease.create()
        ok = False
        try:
            layer, diff_id = self._diff(snapshotter, record.snapshot_key, base, lease.id)
            manifest_desc = self._write_image_blobs(base, layer, diff_id, snapshotter, lease.id)
            self._unpack(snapshotter, base, layer, diff_id, lease.id)
            self._register(manifest_desc)
            ok = True
        finally:
            # On failure a synchronous GC takes whatever the lease alone kept.
            lease.delete(sync=not ok)
        log.info("committed container %s as %s (%s, layer %s)", self.container_id, self.name, manifest_desc.digest,
                 layer.digest)
        return self.svc.get_image(self.name)

    def _image_exists(self) -> bool:
        try:
            self.svc.images.record(self.name)
        except errors.NotFound:
            return False
        return True

    def _diff(self, snapshotter: str, key: str, base: ResolvedImage, lease: str) -> tuple[Descriptor, str]:
        """The container's change as a layer blob in the content store: (descriptor, diff_id)."""
        view = ""
        with self._paused():
            try:
                left: list[MountInfo] = []
                if base.top_chain_id:
                    view = f"{VIEW_SNAPSHOT_PREFIX}{secrets.token_hex(8)}"
                    try:
                        left = self.svc.view_snapshot(snapshotter, view, base.top_chain_id, lease=lease)
                    except errors.NotFound:
                        view = ""
                        raise errors.FailedPrecondition(
                            f"image {base.name} is not unpacked in snapshotter {snapshotter!r}",
                            hint=f"pull it again with PullImageOptions(snapshotter={snapshotter!r})") from None
                right = self.svc.snapshot_mounts(snapshotter, key)
                layer, diff_id = diff_layer(self.svc, left, right, lease=lease,
                                            what=f"diffing container {self.container_id}",
                                            ref=f"ctr-magic-commit-{self.container_id}-{secrets.token_hex(6)}")
            finally:
                if view:
                    self._remove_snapshot(snapshotter, view)
        # Docker manifests list Docker layer types; the bytes (a gzip tar) are the same.
        media_type = MEDIA_DOCKER_LAYER_GZIP if base.manifest.get("mediaType") == MEDIA_DOCKER_MANIFEST \
            else layer.media_type or MEDIA_OCI_LAYER_GZIP
        return Descriptor(media_type=media_type, digest=layer.digest, size=layer.size), diff_id

    def _paused(self) -> _PausedTask:
        return _PausedTask(self.svc, self.container_id)

    def _write_image_blobs(self, base: ResolvedImage, layer: Descriptor, diff_id: str, snapshotter: str,
                           lease: str) -> Descriptor:
        created = _now()
        config = new_config(base.config, diff_id, created=created, message=self.message, cmd=self.cmd, env=self.env,
                            author=self.author,
                            created_by=f"ctr-magic commit {self.container_id}")
        config_bytes = to_json_bytes(config)
        config_media = base.manifest.get("config", {}).get("mediaType") or MEDIA_OCI_CONFIG
        config_desc = Descriptor(media_type=config_media, digest=_digest(config_bytes), size=len(config_bytes))
        top = chain_ids(config["rootfs"]["diff_ids"])[-1]
        write_bytes(self.client, ref_key(config_media, config_desc.digest), config_desc.digest, config_bytes,
                    lease=lease, labels={snapshot_label(snapshotter): top})

        layers = [Descriptor.from_dict(d) for d in base.layers] + [layer]
        manifest_media = base.manifest.get("mediaType") or MEDIA_OCI_MANIFEST
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": manifest_media,
            "config": config_desc.to_dict(),
            "layers": [d.to_dict() for d in layers],
        }
        manifest_bytes = to_json_bytes(manifest)
        manifest_desc = Descriptor(media_type=manifest_media, digest=_digest(manifest_bytes), size=len(manifest_bytes))
        write_bytes(self.client, ref_key(manifest_media, manifest_desc.digest), manifest_desc.digest, manifest_bytes,
                    lease=lease, labels=children_labels([config_desc, *layers]))
        return manifest_desc

    def _unpack(self, snapshotter: str, base: ResolvedImage, layer: Descriptor, diff_id: str, lease: str) -> None:
        """Apply the new layer on the image's top snapshot, committed under the new chain ID."""
        chain = chain_ids([*base.diff_ids, diff_id])[-1]
        Unpacker(self.client, snapshotter, lease=lease).unpack_layer(layer, base.top_chain_id, chain, diff_id)

    def _register(self, manifest: Descriptor) -> None:
        if self.replace:
            record_image(self.client, self.name, manifest)
            return
        stub = self.client.stub(images_pb2_grpc.ImagesStub)
        image = images_pb2.Image(name=self.name, target=descriptor_pb2.Descriptor(
            media_type=manifest.media_type, digest=manifest.digest, size=manifest.size))
        try:
            self.client.call(stub.Create, images_pb2.CreateImageRequest(image=image),
                             what=f"creating image {self.name}")
        except errors.AlreadyExists:  # created by someone else since the check at the start
            raise errors.AlreadyExists(f"image {self.name!r} already exists; nothing was committed",
                                       hint="choose another name, or pass replace=True") from None

    def _remove_snapshot(self, snapshotter: str, key: str) -> None:
        try:
            self.svc.remove_snapshot(snapshotter, key)
        except errors.NotFound:
            pass
        except errors.CtrError as exc:
            log.warning("could not remove temporary snapshot %s: %s", key, exc)


class _PausedTask:
    """Pause the container's task while inside the block if it is running; resume it afterwards."""

    def __init__(self, service: Any, container_id: str) -> None:
        self.svc = service
        self.container_id = container_id
        self.paused = False

    def __enter__(self) -> _PausedTask:
        process = self.svc.task_process(self.container_id)
        if process is not None and process.status == task_pb2.RUNNING:
            self.svc.client.call(self.svc.tasks_stub.Pause, tasks_pb2.PauseTaskRequest(container_id=self.container_id),
                                 what=f"pausing container {self.container_id} for the commit")
            self.paused = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.paused:
            self.svc.client.call(self.svc.tasks_stub.Resume,
                                 tasks_pb2.ResumeTaskRequest(container_id=self.container_id),
                                 what=f"resuming container {self.container_id} after the commit")
            self.paused = False


def commit_container(
    service: Any,
    container_id: str,
    image_ref: str,
    *,
    cmd: Optional[list[str]] = None,
    env: Optional[list[str]] = None,
    message: str = "",
    replace: bool = False,
    author: str = "",
) -> ImageInfo:
    """Save the container's files as a new image *image_ref* (see module docstring).

    ``cmd`` replaces the image's Cmd; ``env`` entries (``KEY=VALUE``) replace or add variables;
    ``message`` becomes the history comment, ``author`` the image's author. An existing *image_ref* is
    AlreadyExists unless
    ``replace=True``.
    """
    missing = [n for n, v in (("container_id", container_id), ("image_ref", image_ref)) if not v]
    if missing:
        raise errors.InvalidArgument(f"commit_container: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                                     "required", hint="e.g. commit_container('box', 'localhost/box:v1')")
    if cmd is not None and (isinstance(cmd, str) or not all(isinstance(a, str) for a in cmd)):
        raise errors.InvalidArgument("commit_container: cmd must be a list of strings", hint='e.g. ["sh", "-c", "..."]')
    if env is not None and (isinstance(env, str) or not all(isinstance(e, str) and "=" in e for e in env)):
        raise errors.InvalidArgument("commit_container: env must be a list of KEY=VALUE strings")
    return Committer(service, container_id, image_ref, cmd=cmd, env=env, message=message, replace=replace,
                     author=author).run()


__all__ = ["commit_container", "diff_layer", "new_config"]
