"""Containers on containerd: create (spec, snapshot, record), get, list, list by label, delete.

A container is stored as containerd's own clients store it (``ctr containers info`` shows it, ``ctr
task start`` runs it): the OCI spec as an ``Any`` holding JSON, runtime ``io.containerd.runc.v2``
with (empty) runc options, the image name, the snapshotter and an active snapshot prepared from
the image's top chain ID. The snapshot is made under a short lease, as the Go client does, so
garbage collection cannot take it before the record refers to it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

from google.protobuf import any_pb2, field_mask_pb2

from .. import errors
from ..atomicfile import write_text_atomic
from ..constants import (
    CONTAINER_RESOLV_CONF_NAME,
    CREATE_LEASE_EXPIRY_SECONDS,
    DEFAULT_RUNTIME,
    LABEL_GC_ROOT,
    LABEL_IMAGE_NAME,
    LABEL_STOP_SIGNAL,
    RUNC_OPTIONS_TYPE_URL,
    SPEC_TYPE_URL,
)
from ..hosthelpers import apply_host_helpers
from ..types import (
    ContainerInfo,
    ContainerSpec,
    CreateContainerRequest,
    DeleteContainerOptions,
    NetworkSetupRequest,
    PullImageOptions,
    RuntimeInfo,
)
from .convert import to_datetime
from .imagestore import ResolvedImage
from .leases import Lease
from .pb import containers_pb2, snapshots_pb2, task_pb2
from .rootfs import read_user_files
from .runtime_base import RuntimeBase, check_id
from .spec import NoRootfs, build_spec, resolv_conf_text, to_json_bytes
from .task_events import quote_filter

log = logging.getLogger(__name__)

_RESOLVED_CACHE_SIZE = 64


def container_info(record: containers_pb2.Container) -> ContainerInfo:
    return ContainerInfo(
        id=record.id,
        image=record.image,
        labels=dict(record.labels),
        snapshotter=record.snapshotter,
        snapshot_key=record.snapshot_key,
        runtime=RuntimeInfo(name=record.runtime.name),
        created_at=to_datetime(record, "created_at"),
        updated_at=to_datetime(record, "updated_at"),
    )


def label_filter(key: str, value: str) -> str:
    """containerd's filter for a label: ``labels."k"=="v"``, or presence only when *value* is empty."""
    selector = f"labels.{quote_filter(key)}"
    return f"{selector}=={quote_filter(value)}" if value else selector


def gc_root_labels(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """containerd's ``gc.root`` label (now), plus *extra*: keeps a snapshot nothing else refers to."""
    labels = {LABEL_GC_ROOT: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    labels.update(extra or {})
    return labels


def _already_exists(container_id: str, namespace: str) -> errors.AlreadyExists:
    return errors.AlreadyExists(f"container {container_id!r} already exists in namespace {namespace!r}",
                                hint="choose another id, or delete the existing container first")


@dataclass(frozen=True)
class ExistingSnapshot:
    """A snapshot a new container takes as its root filesystem instead of the image's layers.

    ``committed``: a fresh active snapshot is prepared on it; otherwise it is used as it is.
    """

    key: str
    committed: bool


class _Undo:
    """What create_container made so far, removed again (newest first) if it fails."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Any]] = []

    def add(self, what: str, fn: Any) -> None:
        self._steps.append((what, fn))

    def run(self) -> None:
        for what, fn in reversed(self._steps):
            try:
                fn()
            except BaseException:  # keep undoing; the original error is what the caller sees
                log.warning("cleanup failed: %s", what, exc_info=True)
        self._steps.clear()


class ContainersMixin(RuntimeBase):
    """create / get / list / list_by_label / delete of the Service contract."""

    # -- create ------------------------------------------------------------------------------------
    def create_container(self, req: CreateContainerRequest) -> ContainerInfo:
        """Create a container from an image (pulled and unpacked first when absent)."""
        if req is None:
            raise errors.InvalidArgument("create_container needs a CreateContainerRequest")
        check_id(req.id)
        if not req.image_ref:
            raise errors.InvalidArgument(f"container {req.id!r}: image_ref is empty", hint="e.g. busybox:latest")
        snapshotter = req.snapshotter or self.snapshotter
        self._check_new_container(req.id)
        image = self._image_for_container(req.image_ref, snapshotter)
        return self._create(req, image, snapshotter, req.snapshot_id or req.id, explicit=bool(req.snapshotter))

    def _check_new_container(self, container_id: str) -> None:
        """InvalidArgument for a bad id, AlreadyExists for a taken one."""
        check_id(container_id)
        if self.container_exists(container_id):
            raise _already_exists(container_id, self.namespace)

    def _image_for_container(self, ref: str, snapshotter: str) -> ResolvedImage:
        """The image, pulled (and unpacked into *snapshotter*) when absent."""
        try:
            return self._resolve_image(ref)
        except errors.NotFound:
            log.info("image %s not found: pulling it", ref)
            self._pull_for_container(ref, snapshotter)
            return self._resolve_image(ref)

    def _resolve_image(self, ref: str) -> ResolvedImage:
        """images.resolve, with manifest and config remembered per image digest (content never changes)."""
        record = self.images.find_record(ref)
        key = (record.name, record.target.digest)
        cache: dict[tuple[str, str], ResolvedImage] = self.__dict__.setdefault("_ctr_resolved_images", {})
        hit = cache.get(key)
        if hit is None:
            hit = self.images.resolve(record.name)
            if len(cache) >= _RESOLVED_CACHE_SIZE:
                cache.clear()
            cache[(hit.name, hit.target_digest)] = hit
        return hit

    def _pull_for_container(self, ref: str, snapshotter: str) -> None:
        pull = getattr(self, "pull_image", None)
        if pull is None:
            raise errors.NotFound(f"image {ref!r} is not in namespace {self.namespace!r}",
                                  hint="pull it first (ctr images pull)")
        pull(ref, PullImageOptions(unpack=True, snapshotter=snapshotter))

    def _snapshot_exists(self, snapshotter: str, key: str) -> bool:
        try:
            self.client.call(self.snapshots_stub.Stat,
                             snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key),
                             what=f"snapshot {key} in {snapshotter}")
        except errors.NotFound:
            return False
        return True

    def _remove_snapshot(self, snapshotter: str, key: str) -> None:
        try:
            self.client.call(self.snapshots_stub.Remove,
                             snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key),
                             what=f"removing snapshot {key} from {snapshotter}")
        except errors.NotFound:
            pass

    def _keep_snapshot(self, snapshotter: str, key: str) -> None:
        """Mark the snapshot as a GC root, as ``ctr snapshots prepare`` does, so it outlives its container."""
        request = snapshots_pb2.UpdateSnapshotRequest(
            snapshotter=snapshotter,
            info=snapshots_pb2.Info(name=key, labels=gc_root_labels()),
            update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{LABEL_GC_ROOT}"]),
        )
        try:
            self.client.call(self.snapshots_stub.Update, request, what=f"keeping snapshot {key} in {snapshotter}")
        except errors.NotFound:
            pass

    def _create(self, req: CreateContainerRequest, image: ResolvedImage, snapshotter: str, key: str, *,
                explicit: bool = False, existing: Optional[ExistingSnapshot] = None) -> ContainerInfo:
        """The one way a container is made: lease, root snapshot, spec, record; all undone on failure.

        The root filesystem is snapshot *key*: prepared on the image's layers, or, with *existing*,
        prepared on that committed snapshot or (an active one) *existing* itself.
        """
        undo = _Undo()
        spec_in = req.spec or ContainerSpec()
        try:
            lease = Lease(self.client, "create", expire=CREATE_LEASE_EXPIRY_SECONDS).create()
            undo.add(f"lease {lease.id}", lease.delete)
            if existing is None:
                mounts = self._prepare_from_image(snapshotter, key, image, lease.id, undo, explicit=explicit)
            elif existing.committed:
                mounts = self._prepare_snapshot(snapshotter, key, existing.key, lease.id, undo)
            else:
                mounts = self.snapshot_mount_list(snapshotter, key)
            peek = existing is not None or image.top_chain_id  # an image without layers has no files to read
            rootfs = read_user_files(mounts, f"container {req.id}") if peek else NoRootfs()
            spec_in = self._with_host_files(req.id, spec_in, undo)
            resolv = self._write_resolv_conf(req.id, spec_in.dns, undo) if spec_in.dns else ""
            spec = build_spec(namespace=self.namespace, container_id=req.id, image_config=image.runtime_config,
                              container_spec=spec_in, rootfs=rootfs, resolv_conf_path=resolv, image_name=image.name)
            record = self._create_record(req, image, spec, snapshotter, key, lease.id, undo)
        except BaseException:
            undo.run()
            raise
        lease.delete()
        if existing is None:
            log.info("created container %s from %s", req.id, image.name)
        else:
            log.info("created container %s on snapshot %s (config of %s)", req.id, existing.key, image.name)
        return container_info(record)

    def _prepare_from_image(self, snapshotter: str, key: str, image: ResolvedImage, lease: str, undo: _Undo, *,
                            explicit: bool) -> list[Any]:
        """Prepare on the image's top layer; without an explicit snapshotter, unpack the image if needed.

        With an explicit snapshotter an existing snapshot *key* is replaced.
        """
        if explicit and self._snapshot_exists(snapshotter, key):
            log.info("replacing snapshot %s in %s", key, snapshotter)
            self._remove_snapshot(snapshotter, key)
        parent = image.top_chain_id
        try:
            return self._prepare_snapshot(snapshotter, key, parent, lease, undo)
        except errors.NotFound:
            if explicit:
                raise errors.NotFound(
                    f"parent snapshot {parent} (top layer of {image.name}) does not exist in snapshotter "
                    f"{snapshotter!r}",
                    hint=f"unpack the image there: pull_image({image.name!r}, "
                    f"PullImageOptions(snapshotter={snapshotter!r}))",
                ) from None
        log.info("image %s is not unpacked in %s: unpacking it", image.name, snapshotter)
        self._pull_for_container(image.name, snapshotter)
        try:
            return self._prepare_snapshot(snapshotter, key, parent, lease, undo)
        except errors.NotFound:
            raise errors.NotFound(f"image {image.name} is not unpacked in snapshotter {snapshotter!r} "
                                  f"(no snapshot {parent})") from None

    def _prepare_snapshot(self, snapshotter: str, key: str, parent: str, lease: str, undo: _Undo) -> list[Any]:
        request = snapshots_pb2.PrepareSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent)
        try:
            resp = self.client.call(self.snapshots_stub.Prepare, request, lease=lease,
                                    what=f"preparing snapshot {key} in {snapshotter}")
        except errors.AlreadyExists:
            raise errors.AlreadyExists(f"snapshot {key!r} already exists in snapshotter {snapshotter!r}",
                                       hint="choose another snapshot_id, or remove that snapshot") from None
        except BaseException:
            # Interrupted or failed: the daemon may still have made it; it is ours either way.
            undo.add(f"snapshot {key}", lambda: self._remove_snapshot(snapshotter, key))
            raise
        undo.add(f"snapshot {key}", lambda: self._remove_snapshot(snapshotter, key))
        return list(resp.mounts)

    def _with_host_files(self, container_id: str, spec_in: ContainerSpec, undo: _Undo) -> ContainerSpec:
        if not (spec_in.host_dns or spec_in.host_timezone):
            return spec_in
        directory = self.container_dir(container_id)
        undo.add(f"directory {directory}", lambda: self.remove_container_dir(container_id))
        return apply_host_helpers(spec_in, directory)

    def _write_resolv_conf(self, container_id: str, nameservers: list[str], undo: _Undo) -> str:
        text = resolv_conf_text(nameservers)
        directory = self.container_dir(container_id)
        undo.add(f"directory {directory}", lambda: self.remove_container_dir(container_id))
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, CONTAINER_RESOLV_CONF_NAME)
        write_text_atomic(path, text)
        return path

    def _create_record(self, req: CreateContainerRequest, image: ResolvedImage, spec: dict[str, Any],
                       snapshotter: str, key: str, lease: str, undo: _Undo) -> containers_pb2.Container:
        image_config = image.runtime_config
        labels = dict(image_config.get("Labels") or {})
        labels[LABEL_STOP_SIGNAL] = image_config.get("StopSignal") or "SIGTERM"
        labels.update(req.labels or {})
        labels[LABEL_IMAGE_NAME] = image.name
        record = containers_pb2.Container(
            id=req.id,
            labels=labels,
            image=image.name,
            runtime=containers_pb2.Container.Runtime(
                name=DEFAULT_RUNTIME, options=any_pb2.Any(type_url=RUNC_OPTIONS_TYPE_URL)),
            spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=to_json_bytes(spec)),
            snapshotter=snapshotter,
            snapshot_key=key,
        )
        try:
            resp = self.client.call(self.containers_stub.Create, containers_pb2.CreateContainerRequest(
                container=record), lease=lease, what=f"creating container {req.id}")
        except errors.AlreadyExists:
            raise _already_exists(req.id, self.namespace) from None
        except BaseException:
            undo.add(f"container {req.id}", lambda: self._delete_record(req.id))
            raise
        undo.add(f"container {req.id}", lambda: self._delete_record(req.id))
        self._remember_spec(resp.container)
        return resp.container

    def _delete_record(self, container_id: str) -> None:
        self.forget_spec(container_id)
        try:
            self.client.call(self.containers_stub.Delete, containers_pb2.DeleteContainerRequest(id=container_id),
                             what=f"deleting container {container_id}")
        except errors.NotFound:
            pass

    # -- read ----------------------------------------------------------------------------------------
    def get_container(self, id: str) -> ContainerInfo:
        info = container_info(self.container_record(id))
        info.ip = self.container_ip(id)  # type: ignore[attr-defined]  (NetworkMixin)
        return info

    def list_containers(self) -> list[ContainerInfo]:
        return self._list([])

    def list_containers_by_label(self, key: str, value: str) -> list[ContainerInfo]:
        """Containers whose label *key* equals *value* (any value when *value* is "")."""
        if not key:
            raise errors.InvalidArgument("label key is empty", hint="e.g. list_containers_by_label('app', 'web')")
        return self._list([label_filter(key, value or "")])

    def _list(self, filters: list[str]) -> list[ContainerInfo]:
        resp = self.client.call(self.containers_stub.List, containers_pb2.ListContainersRequest(filters=filters),
                                what="listing containers")
        ips: dict[str, str] = self.container_ips()  # type: ignore[attr-defined]  (NetworkMixin)
        infos = [container_info(c) for c in resp.containers]
        for info in infos:
            info.ip = ips.get(info.id, "")
        return sorted(infos, key=lambda c: c.id)

    # -- delete --------------------------------------------------------------------------------------
    def delete_container(self, id: str, opts: Optional[DeleteContainerOptions] = None) -> None:
        """Delete the container, its task, its network attachment and (by default) its snapshot.

        With ``cleanup_snapshot=False`` the snapshot stays, labelled as a GC root (remove it with
        the snapshot tools when done).

        A running task makes this fail with FailedPrecondition unless ``force=True``, which kills
        it (SIGKILL to every process), waits for its exit and deletes it. A stopped task is
        deleted along with the container.
        """
        opts = opts or DeleteContainerOptions()
        record = self.container_record(id)
        process = self.task_process(id)
        if process is not None and process.status != task_pb2.STOPPED:
            if not opts.force:
                state = task_pb2.Status.Name(process.status).lower()
                raise errors.FailedPrecondition(
                    f"cannot delete container {id!r}: it has a {state} task (pid {process.pid})",
                    hint="stop it first (stop_container) or pass DeleteContainerOptions(force=True)")
            self.kill_and_wait(id)
        if process is not None:
            self.remove_task(id)
        # Its pinned network namespace and IP allocations would outlive the record otherwise.
        self.remove_network(NetworkSetupRequest(container_id=id))  # type: ignore[attr-defined]  (NetworkMixin)
        snapshotter = record.snapshotter or self.snapshotter
        if record.snapshot_key and not opts.cleanup_snapshot:
            # Without the record nothing refers to the snapshot: garbage collection would take it.
            self._keep_snapshot(snapshotter, record.snapshot_key)
        if opts.cleanup_snapshot and record.snapshot_key:
            # Snapshot first, record second (as containerd's own client does). The other way round the
            # snapshot is unreferenced for a moment, and if containerd 1.6's garbage collector takes it
            # then, its parent keeps a dangling child link and can never be removed (a checkpoint
            # version would be stuck with "cannot remove snapshot with child").
            self._remove_snapshot(snapshotter, record.snapshot_key)
        self._delete_record(id)
        self.remove_container_dir(id)
        log.info("deleted container %s", id)
