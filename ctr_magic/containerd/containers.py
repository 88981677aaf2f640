"""Containers on containerd: create (spec, snapshot, record), get, list, list by label, delete.

A container is stored as containerd's own clients store it (``ctr containers info`` shows it, ``ctr
task start`` runs it): the OCI spec as an ``Any`` holding JSON, runtime ``io.containerd.runc.v2``
with (empty) runc options, the image name, the snapshotter and an active snapshot prepared from
the image's top chain ID. The snapshot is made under a short lease, as the Go client does, so
garbage collection cannot take it before the record refers to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from google.protobuf import any_pb2

from .. import errors
from ..atomicfile import write_text_atomic
from ..constants import (
    CONTAINER_RESOLV_CONF_NAME,
    CREATE_LEASE_EXPIRY_SECONDS,
    DEFAULT_RUNTIME,
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
from .imagestore import ImageStore, ResolvedImage
from .leases import Lease
from .network import NetworkPart
from .pb import containers_pb2, task_pb2
from .rootfs import read_user_files
from .runtime_base import Runtime, check_id
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


#: How long a failed create waits for containerd to come back to undo what it made.
UNDO_WAIT = 20.0


class _Undo:
    """What create_container made so far, removed again (newest first) if it fails."""

    def __init__(self, client: Any = None) -> None:
        self._steps: list[tuple[str, Any]] = []
        self._client = client

    def add(self, what: str, fn: Any) -> None:
        self._steps.append((what, fn))

    def run(self) -> None:
        give_up = time.monotonic() + UNDO_WAIT
        for what, fn in reversed(self._steps):
            try:
                fn()
            except errors.Unavailable:
                # containerd went away mid-create (killed, restarting): wait for it (bounded) and undo
                # there, or a lease and a snapshot without a container stay behind.
                left = give_up - time.monotonic()
                if self._client is None or left <= 0 or not self._client.wait_until_reachable(left):
                    log.warning("cleanup failed: %s (containerd unreachable)", what)
                    continue
                try:
                    fn()
                except BaseException:
                    log.warning("cleanup failed: %s", what, exc_info=True)
            except BaseException:  # keep undoing; the original error is what the caller sees
                log.warning("cleanup failed: %s", what, exc_info=True)
        self._steps.clear()


class ContainersPart:
    """create / get / list / list_by_label / delete of the Service contract.

    Pulls missing images through *pull* (the images part's ``pull_image``) and asks *network*
    for addresses and to detach a deleted container.
    """

    def __init__(self, runtime: Runtime, images: ImageStore, network: NetworkPart,
                 pull: Callable[[str, PullImageOptions], Any]) -> None:
        self.runtime = runtime
        self.client = runtime.client
        self.containers_stub = runtime.containers_stub
        self.snapshots = runtime.snapshots
        self.images = images
        self.network = network
        self.pull = pull
        self._resolved: dict[tuple[str, str], ResolvedImage] = {}  # (name, digest) -> manifest and config

    # -- create ------------------------------------------------------------------------------------
    def create_container(self, req: CreateContainerRequest) -> ContainerInfo:
        """Create a container from an image (pulled and unpacked first when absent)."""
        if req is None:
            raise errors.InvalidArgument("create_container needs a CreateContainerRequest")
        check_id(req.id)
        if not req.image_ref:
            raise errors.InvalidArgument(f"container {req.id!r}: image_ref is empty", hint="e.g. busybox:latest")
        snapshotter = req.snapshotter or self.runtime.snapshotter
        self.check_new_container(req.id)
        image = self.image_for_container(req.image_ref, snapshotter)
        return self.build(req, image, snapshotter, req.snapshot_id or req.id, explicit=bool(req.snapshotter))

    def check_new_container(self, container_id: str) -> None:
        """InvalidArgument for a bad id, AlreadyExists for a taken one."""
        check_id(container_id)
        if self.runtime.container_exists(container_id):
            raise _already_exists(container_id, self.runtime.namespace)

    def image_for_container(self, ref: str, snapshotter: str) -> ResolvedImage:
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
        cache = self._resolved
        hit = cache.get(key)
        if hit is None:
            hit = self.images.resolve(record.name)
            if len(cache) >= _RESOLVED_CACHE_SIZE:
                cache.clear()
            cache[(hit.name, hit.target_digest)] = hit
        return hit

    def _pull_for_container(self, ref: str, snapshotter: str) -> None:
        self.pull(ref, PullImageOptions(unpack=True, snapshotter=snapshotter))

    def build(self, req: CreateContainerRequest, image: ResolvedImage, snapshotter: str, key: str, *,
                explicit: bool = False, existing: Optional[ExistingSnapshot] = None) -> ContainerInfo:
        """The one way a container is made: lease, root snapshot, spec, record; all undone on failure.

        The root filesystem is snapshot *key*: prepared on the image's layers, or, with *existing*,
        prepared on that committed snapshot or (an active one) *existing* itself.
        """
        undo = _Undo(self.client)
        spec_in = req.spec or ContainerSpec()
        try:
            lease = Lease(self.client, "create", expire=CREATE_LEASE_EXPIRY_SECONDS)
            undo.add(f"lease {lease.id}", lease.delete)  # before create(): a Ctrl-C right after it lands here
            lease.create()
            if existing is None:
                mounts = self._prepare_from_image(snapshotter, key, image, lease.id, undo, explicit=explicit)
            elif existing.committed:
                mounts = self._prepare_snapshot(snapshotter, key, existing.key, lease.id, undo)
            else:
                mounts = self.runtime.snapshot_mount_list(snapshotter, key)
            peek = existing is not None or image.top_chain_id  # an image without layers has no files to read
            rootfs = read_user_files(mounts, f"container {req.id}") if peek else NoRootfs()
            spec_in = self._with_host_files(req.id, spec_in, undo)
            resolv = self._write_resolv_conf(req.id, spec_in.dns, undo) if spec_in.dns else ""
            spec = build_spec(namespace=self.runtime.namespace, container_id=req.id, image_config=image.runtime_config,
                              container_spec=spec_in, rootfs=rootfs, resolv_conf_path=resolv, image_name=image.name)
            record = self._create_record(req, image, spec, snapshotter, key, lease=lease.id, undo=undo)
        except BaseException:
            undo.run()
            raise
        release = _Undo(self.client)  # a containerd kill right now must not leave the lease behind
        release.add(f"lease {lease.id}", lease.delete)
        release.run()
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
        if explicit and self.snapshots.exists(snapshotter, key):
            log.info("replacing snapshot %s in %s", key, snapshotter)
            self.snapshots.remove_if_present(snapshotter, key)
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
        try:
            mounts = self.snapshots.prepare(snapshotter, key, parent, lease=lease,
                                            what=f"preparing snapshot {key} in {snapshotter}")
        except errors.AlreadyExists:
            raise errors.AlreadyExists(f"snapshot {key!r} already exists in snapshotter {snapshotter!r}",
                                       hint="choose another snapshot_id, or remove that snapshot") from None
        except BaseException:
            # Interrupted or failed: the daemon may still have made it; it is ours either way.
            undo.add(f"snapshot {key}", lambda: self.snapshots.remove_if_present(snapshotter, key))
            raise
        undo.add(f"snapshot {key}", lambda: self.snapshots.remove_if_present(snapshotter, key))
        return mounts

    def _with_host_files(self, container_id: str, spec_in: ContainerSpec, undo: _Undo) -> ContainerSpec:
        if not (spec_in.host_dns or spec_in.host_timezone):
            return spec_in
        directory = self.runtime.container_dir(container_id)
        undo.add(f"directory {directory}", lambda: self.runtime.remove_container_dir(container_id))
        return apply_host_helpers(spec_in, directory)

    def _write_resolv_conf(self, container_id: str, nameservers: list[str], undo: _Undo) -> str:
        text = resolv_conf_text(nameservers)
        directory = self.runtime.container_dir(container_id)
        undo.add(f"directory {directory}", lambda: self.runtime.remove_container_dir(container_id))
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, CONTAINER_RESOLV_CONF_NAME)
        write_text_atomic(path, text)
        return path

    def _create_record(self, req: CreateContainerRequest, image: ResolvedImage, spec: dict[str, Any],
                       snapshotter: str, key: str, *, lease: str, undo: _Undo) -> containers_pb2.Container:
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
            raise _already_exists(req.id, self.runtime.namespace) from None
        except BaseException:
            undo.add(f"container {req.id}", lambda: self._delete_record(req.id))
            raise
        undo.add(f"container {req.id}", lambda: self._delete_record(req.id))
        self.runtime.remember_spec(resp.container)
        return resp.container

    def _delete_record(self, container_id: str) -> None:
        self.runtime.forget_spec(container_id)
        with contextlib.suppress(errors.NotFound):
            self.client.call(self.containers_stub.Delete, containers_pb2.DeleteContainerRequest(id=container_id),
                             what=f"deleting container {container_id}")

    # -- read ----------------------------------------------------------------------------------------
    def get_container(self, id: str) -> ContainerInfo:
        info = container_info(self.runtime.container_record(id))
        info.ip = self.network.container_ip(id)
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
        ips = self.network.container_ips()
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
        record = self.runtime.container_record(id)
        process = self.runtime.task_process(id)
        if process is not None and process.status != task_pb2.STOPPED:
            if not opts.force:
                state = task_pb2.Status.Name(process.status).lower()
                raise errors.FailedPrecondition(
                    f"cannot delete container {id!r}: it has a {state} task (pid {process.pid})",
                    hint="stop it first (stop_container) or pass DeleteContainerOptions(force=True)")
            self.runtime.kill_and_wait(id)
        if process is not None:
            self.runtime.remove_task(id)
        # Its pinned network namespace and IP allocations would outlive the record otherwise.
        self.network.remove_network(NetworkSetupRequest(container_id=id))
        snapshotter = record.snapshotter or self.runtime.snapshotter
        if record.snapshot_key and not opts.cleanup_snapshot:
            # Without the record nothing refers to the snapshot: garbage collection would take it.
            self.snapshots.keep(snapshotter, record.snapshot_key)
        if opts.cleanup_snapshot and record.snapshot_key:
            # Snapshot first, record second (as containerd's own client does). The other way round the
            # snapshot is unreferenced for a moment, and if containerd 1.6's garbage collector takes it
            # then, its parent keeps a dangling child link and can never be removed (a checkpoint
            # version would be stuck with "cannot remove snapshot with child").
            self.snapshots.remove_if_present(snapshotter, record.snapshot_key)
        self._delete_record(id)
        self.runtime.remove_container_dir(id)
        log.info("deleted container %s", id)
