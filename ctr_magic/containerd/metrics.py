"""Resource samples of a task from containerd's ``Tasks.Metrics`` (cgroup v1 or v2 payloads).

containerd keeps no network counters for a task; where the task's network namespace is readable on
this host (``/proc/PID/net/dev``), its interface counters (loopback aside) are added.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Optional

from .. import errors
from .._proto.io.containerd.cgroups.v1 import metrics_pb2 as cgroups_v1
from .._proto.io.containerd.cgroups.v2 import metrics_pb2 as cgroups_v2
from ..monitoring import StatsSample, effective_limit
from .client import ContainerdClient
from .pb import tasks_pb2, tasks_pb2_grpc
from .task_events import quote_filter

log = logging.getLogger(__name__)

_V1 = cgroups_v1.Metrics.DESCRIPTOR.full_name
_V2 = cgroups_v2.Metrics.DESCRIPTOR.full_name


def _type_name(type_url: str) -> str:
    return type_url.rsplit("/", 1)[-1]


def _from_v1(container_id: str, stamp: float, m: Any) -> StatsSample:
    memory = m.memory
    inactive = memory.total_inactive_file
    usage = max(memory.usage.usage - inactive, 0)
    reads = sum(e.value for e in m.blkio.io_service_bytes_recursive if e.op.lower() == "read")
    writes = sum(e.value for e in m.blkio.io_service_bytes_recursive if e.op.lower() == "write")
    return StatsSample(
        container_id=container_id,
        read_at=stamp,
        cpu_ns=m.cpu.usage.total,
        online_cpus=len(m.cpu.usage.per_cpu) or os.cpu_count() or 1,
        memory_usage=usage,
        memory_limit=effective_limit(memory.usage.limit or memory.hierarchical_memory_limit),
        memory_rss=memory.total_rss,
        pids=m.pids.current if m.HasField("pids") else None,
        block_read=reads,
        block_write=writes,
    )


def _from_v2(container_id: str, stamp: float, m: Any) -> StatsSample:
    memory = m.memory
    return StatsSample(
        container_id=container_id,
        read_at=stamp,
        cpu_ns=m.cpu.usage_usec * 1000,
        online_cpus=os.cpu_count() or 1,
        memory_usage=max(memory.usage - memory.inactive_file, 0),
        memory_limit=effective_limit(memory.usage_limit),
        memory_rss=memory.anon,
        pids=m.pids.current if m.HasField("pids") else None,
        block_read=sum(e.rbytes for e in m.io.usage),
        block_write=sum(e.wbytes for e in m.io.usage),
    )


def decode_metric(container_id: str, stamp: float, type_url: str, payload: bytes) -> StatsSample:
    """A StatsSample from one Metric's payload (``io.containerd.cgroups.v1.Metrics`` or v2)."""
    name = _type_name(type_url)
    if name == _V1:
        return _from_v1(container_id, stamp, cgroups_v1.Metrics.FromString(payload))
    if name == _V2:
        return _from_v2(container_id, stamp, cgroups_v2.Metrics.FromString(payload))
    raise errors.NotSupported(f"metrics of {container_id}: unknown payload type {name!r}",
                              hint="ctr-magic decodes cgroup v1 and v2 metrics")


def network_counters(pid: int) -> tuple[Optional[int], Optional[int]]:
    """(received, sent) bytes of the network namespace of *pid*, loopback aside; (None, None) if unreadable."""
    try:
        with open(f"/proc/{pid}/net/dev") as dev:
            lines = dev.read().splitlines()[2:]
    except OSError:
        return None, None
    rx = tx = 0
    for line in lines:
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            continue
        fields = counters.split()
        if len(fields) >= 9:
            rx += int(fields[0])
            tx += int(fields[8])
    return rx, tx


def task_sample(client: ContainerdClient, container_id: str, pid: int = 0) -> StatsSample:
    """One sample of the running task of *container_id*; FailedPrecondition when it has none."""
    stub = client.stub(tasks_pb2_grpc.TasksStub)
    resp = client.call(stub.Metrics, tasks_pb2.MetricsRequest(filters=[f"id=={quote_filter(container_id)}"]),
                       what=f"reading the metrics of {container_id}")
    metric = next((m for m in resp.metrics if m.id == container_id), None)
    if metric is None or not metric.HasField("data"):
        raise errors.FailedPrecondition(f"container {container_id} has no running task to measure",
                                        hint=f"start it first: %ctr start {container_id}")
    stamp = metric.timestamp.seconds + metric.timestamp.nanos / 1e9 if metric.HasField("timestamp") else time.time()
    sample = decode_metric(container_id, stamp, metric.data.type_url, metric.data.value)
    if pid:
        rx, tx = network_counters(pid)
        if rx is not None:
            from dataclasses import replace

            sample = replace(sample, net_rx=rx, net_tx=tx)
    return sample


__all__ = ["decode_metric", "network_counters", "task_sample"]
