"""DefaultService: the Service contract on containerd's gRPC API."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

from google.protobuf import empty_pb2

from ..constants import DEFAULT_NAMESPACE, DEFAULT_SOCKET_PATH
from ..errors import FailedPrecondition
from ..limits import ResourceLimits
from .client import ContainerdClient
from .containers import ContainersMixin
from .exec import ExecMixin
from .images import ImagesMixin
from .leases import Lease
from .network import NetworkMixin
from .pb import introspection_pb2, introspection_pb2_grpc, namespace_pb2, namespace_pb2_grpc, version_pb2_grpc
from .resources import ResourceControl
from .snapshots import SnapshotsMixin
from .tasks import TasksMixin

log = logging.getLogger(__name__)


@dataclass
class DaemonVersion:
    version: str
    revision: str
    address: str
    uuid: str = ""


@dataclass
class PluginInfo:
    type: str
    id: str
    status: str
    requires: list[str] = field(default_factory=list)
    error: str = ""


class DefaultService(
    ImagesMixin, ContainersMixin, TasksMixin, ExecMixin, SnapshotsMixin, NetworkMixin
):
    """containerd backend. ``DefaultService.connect(socket, namespace)`` is the usual way in."""

    backend = "containerd"

    @classmethod
    def connect(
        cls,
        socket: str = DEFAULT_SOCKET_PATH,
        namespace: str = DEFAULT_NAMESPACE,
        **kwargs: str,
    ) -> DefaultService:
        return cls(ContainerdClient(socket, namespace), **kwargs)

    # -- daemon facts ---------------------------------------------------------------------------
    def version(self, timeout: Optional[float] = 10.0) -> DaemonVersion:
        stub = self.client.stub(version_pb2_grpc.VersionStub)
        resp = self.client.call(stub.Version, empty_pb2.Empty(), what="asking containerd its version",
                                timeout=timeout)
        uuid = ""
        try:
            intro = self.client.stub(introspection_pb2_grpc.IntrospectionStub)
            uuid = self.client.call(intro.Server, empty_pb2.Empty(), what="server info", timeout=timeout).uuid
        except Exception:  # older daemons have no Server RPC; the uuid is a nicety
            log.debug("introspection Server call failed", exc_info=True)
        return DaemonVersion(resp.version, resp.revision, self.client.address, uuid)

    def ping(self, timeout: float = 5.0) -> bool:
        """True when the daemon answers; raises Unavailable (with a hint) when it does not."""
        self.version(timeout=timeout)
        return True

    def namespaces(self) -> list[str]:
        stub = self.client.stub(namespace_pb2_grpc.NamespacesStub)
        resp = self.client.call(stub.List, namespace_pb2.ListNamespacesRequest(), what="listing namespaces")
        return sorted(ns.name for ns in resp.namespaces)

    def delete_namespace(self, name: str = "") -> None:
        """Remove an (empty) namespace, ours by default; containerd refuses one that still holds objects."""
        stub = self.client.stub(namespace_pb2_grpc.NamespacesStub)
        target = name or self.namespace
        request = namespace_pb2.DeleteNamespaceRequest(name=target)
        what = f"deleting namespace {target!r}"
        try:
            self.client.call(stub.Delete, request, what=what)
        except FailedPrecondition:
            # Blobs of just-deleted images linger until the next collection: run one, then try again.
            self.collect_garbage()
            self.client.call(stub.Delete, request, what=what)

    def collect_garbage(self) -> None:
        """Run containerd's garbage collector now and wait for it (deleting a lease with sync does that)."""
        Lease(self.client, "gc").create().delete(sync=True)

    def plugins(self) -> list[PluginInfo]:
        stub = self.client.stub(introspection_pb2_grpc.IntrospectionStub)
        resp = self.client.call(stub.Plugins, introspection_pb2.PluginsRequest(), what="listing plugins")
        out = []
        for plugin in resp.plugins:
            error = plugin.init_err.message if plugin.HasField("init_err") else ""
            out.append(PluginInfo(plugin.type, plugin.id, "error" if error else "ok", list(plugin.requires),
                                  error))
        return out

    # -- resource limits (features.ResourceUpdates, features.OomReports) -----------------------------
    def update_container(self, container_id: str, limits: ResourceLimits) -> None:
        """New memory/CPU/pids limits for a running container (``Tasks.Update``), kept for its next start."""
        ResourceControl(self).update(container_id, limits)

    def oom_killed(self, container_id: str) -> bool:
        """True when the OOM killer took a process of the container's task (ask before deleting the task)."""
        return ResourceControl(self).oom_killed(container_id)

    def memory_limit(self, container_id: str) -> int:
        return ResourceControl(self).memory_limit(container_id)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> DefaultService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
