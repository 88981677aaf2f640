"""Short names for the generated containerd stubs (the one place that knows their paths)."""

# ruff: noqa: F401
from __future__ import annotations

from .._proto.containerd.events import task_pb2 as task_events_pb2
from .._proto.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from .._proto.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from .._proto.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from .._proto.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from .._proto.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from .._proto.containerd.services.introspection.v1 import introspection_pb2, introspection_pb2_grpc
from .._proto.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from .._proto.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from .._proto.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from .._proto.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from .._proto.containerd.services.version.v1 import version_pb2, version_pb2_grpc
from .._proto.containerd.types import descriptor_pb2, mount_pb2, platform_pb2
from .._proto.containerd.types.task import task_pb2
