"""One RUN of a containerd build: a container on the step's active snapshot, its output streamed
to the caller as it comes (stdout and stderr apart), its exit code returned, and afterwards no
container, task, FIFO or network left, whatever happened (an interrupt kills the process first).

The container is made here rather than through ``create_container``: a build step has no image
to name, only the config built so far (Env, WorkingDir, User) and the snapshot to run on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
from typing import Any

from google.protobuf import any_pb2

from .. import errors
from ..constants import DEFAULT_RUNTIME, LABEL_PREFIX, RUNC_OPTIONS_TYPE_URL, SPEC_TYPE_URL
from ..containerd.fifo import FifoSet, pump
from ..containerd.pb import containers_pb2, mount_pb2, tasks_pb2
from ..containerd.rootfs import read_user_files
from ..containerd.spec import build_spec, to_json_bytes
from ..hosthelpers import apply_host_helpers
from ..types import ContainerSpec, MountInfo, NetworkSetupRequest
from .events import Reporter
from .plan import RunAction

log = logging.getLogger(__name__)

LABEL_BUILD = f"{LABEL_PREFIX}/build"
#: Runtime mounts a build container does not get (Docker's RUN has no tmpfs on /run).
_DROPPED_MOUNTS = ("/run",)


def _pb_mounts(mounts: list[MountInfo]) -> list[mount_pb2.Mount]:
    return [mount_pb2.Mount(type=m.type, source=m.source, options=list(m.options)) for m in mounts]


def _overlay_dirs(mounts: list[MountInfo]) -> tuple[str, list[str]]:
    """(upperdir, lowerdirs) of an overlay active snapshot; ("", []) for other snapshotters."""
    if len(mounts) != 1 or mounts[0].type != "overlay":
        return "", []
    upper, lowers = "", []
    for option in mounts[0].options:
        if option.startswith("upperdir="):
            upper = option.split("=", 1)[1]
        elif option.startswith("lowerdir="):
            lowers = option.split("=", 1)[1].split(":")
    return upper, lowers


def drop_runtime_mountpoints(mounts: list[MountInfo], destinations: list[str]) -> None:
    """Remove the empty mount points runc made for the runtime's mounts (/proc, /dev, ...) when the
    image had none, so they do not end up in the layer (Docker keeps them in a separate init layer)."""
    upper, lowers = _overlay_dirs(mounts)
    if not upper:
        return
    for dest in sorted(destinations, key=lambda d: -d.count("/")):  # deepest first: /etc/x before /etc
        rel = dest.strip("/")
        while rel:
            path = os.path.join(upper, rel)
            if not os.path.lexists(path) or any(os.path.lexists(os.path.join(lower, rel)) for lower in lowers):
                break
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)  # only when empty
                elif os.path.getsize(path) == 0:
                    os.remove(path)
                else:
                    break
            except OSError:
                break
            rel = os.path.dirname(rel)  # a parent runc made for it, when the image had none


class RunStep:
    """Runs RUN actions for one build on one service (see module docstring)."""

    def __init__(self, service: Any, build_id: str, lease: str, reporter: Reporter, *, net: bool) -> None:
        self.svc = service
        self.client = service.client
        self.build_id = build_id
        self.lease = lease
        self.reporter = reporter
        self.net = net

    def _spec(self, container_id: str, action: RunAction, mounts: list[MountInfo]) -> dict[str, Any]:
        rootfs = read_user_files(mounts, f"build step {container_id}")
        image_config = {"Env": action.env, "WorkingDir": action.workdir, "User": action.user}
        container_spec = ContainerSpec(cmd=action.argv)
        if self.net:  # with a network comes the host's DNS, as `%ctr run --net --host-dns` has it
            container_spec = apply_host_helpers(dataclasses.replace(container_spec, host_dns=True),
                                                self.svc.data_root())
        spec = build_spec(namespace=self.svc.namespace, container_id=container_id, image_config=image_config,
                          container_spec=container_spec, rootfs=rootfs)
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] not in _DROPPED_MOUNTS]
        return spec

    def run(self, container_id: str, key: str, snapshotter: str, mounts: list[MountInfo], action: RunAction) -> int:
        """Run *action* in a container on active snapshot *key*; its exit code."""
        spec = self._spec(container_id, action, mounts)
        record = containers_pb2.Container(
            id=container_id, labels={LABEL_BUILD: self.build_id},
            runtime=containers_pb2.Container.Runtime(name=DEFAULT_RUNTIME,
                                                     options=any_pb2.Any(type_url=RUNC_OPTIONS_TYPE_URL)),
            spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=to_json_bytes(spec)),
            snapshotter=snapshotter, snapshot_key=key)
        fifos = FifoSet(stdout=True, stderr=True)
        created = task_made = networked = exited = False
        try:
            self.client.call(self.svc.containers_stub.Create, containers_pb2.CreateContainerRequest(container=record),
                             what=f"creating build container {container_id}", lease=self.lease)
            created = True
            task_made = True  # an interrupted Create may still have made the task
            self.client.call(self.svc.tasks_stub.Create, tasks_pb2.CreateTaskRequest(
                container_id=container_id, rootfs=_pb_mounts(mounts), stdout=fifos.stdout_path,
                stderr=fifos.stderr_path), what=f"creating the task of build container {container_id}")
            if self.net:
                networked = True
                self.svc.setup_network(NetworkSetupRequest(container_id=container_id))
            self.client.call(self.svc.tasks_stub.Start, tasks_pb2.StartRequest(container_id=container_id),
                             what=f"starting build container {container_id}")
            pump(fifos, {name: self._sink(name) for name in ("stdout", "stderr")})
            resp = self.client.call(self.svc.tasks_stub.Wait, tasks_pb2.WaitRequest(container_id=container_id),
                                    what=f"waiting for build container {container_id}", timeout=None)
            exited = True
            return int(resp.exit_status)
        finally:
            self._clean_up(container_id, created=created, task=task_made, running=not exited, networked=networked)
            fifos.close()
            drop_runtime_mountpoints(mounts, [m["destination"] for m in spec["mounts"]])

    def _sink(self, name: str) -> Any:
        def write(chunk: memoryview) -> None:
            self.reporter.output(name, bytes(chunk))

        return write

    def _clean_up(self, container_id: str, *, created: bool, task: bool, running: bool, networked: bool) -> None:
        """Kill and delete the task, detach the network, delete the container: nothing stays."""
        try:
            if task:
                killed = False
                if running:
                    with contextlib.suppress(errors.CtrError):
                        killed = self.svc.kill_process(container_id, signal.SIGKILL, all=True)
                if killed:
                    with contextlib.suppress(errors.CtrError):
                        self.client.call(self.svc.tasks_stub.Wait, tasks_pb2.WaitRequest(container_id=container_id),
                                         what=f"waiting for build container {container_id}", timeout=30.0)
                self.svc.remove_task(container_id)
            if networked:
                with contextlib.suppress(errors.CtrError):
                    self.svc.remove_network(NetworkSetupRequest(container_id=container_id))
            if created:
                with contextlib.suppress(errors.NotFound):
                    self.client.call(self.svc.containers_stub.Delete,
                                     containers_pb2.DeleteContainerRequest(id=container_id),
                                     what=f"deleting build container {container_id}")
        except KeyboardInterrupt:
            # A second Ctrl-C while cleaning up: finish first, then let it through.
            self._clean_up(container_id, created=created, task=task, running=running, networked=networked)
            raise


__all__ = ["LABEL_BUILD", "RunStep", "drop_runtime_mountpoints"]
