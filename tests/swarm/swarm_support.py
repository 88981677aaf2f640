"""Helpers of the swarm tests (polling, what a cluster left behind, running a cell)."""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from ctr_magic.swarm.cluster import ClusterInfo


def wait_for(predicate: Callable[[], Any], timeout: float = 120.0, interval: float = 0.5, what: str = "") -> Any:
    """Poll *predicate* until it returns something truthy; fail with *what* after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


def leftovers(info: ClusterInfo) -> list[str]:
    """What of the cluster is still on the host (empty when down left nothing)."""
    left = []
    for node in info.nodes:
        if os.path.exists(f"/run/netns/{node.netns}"):
            left.append(f"netns {node.netns}")
        if os.path.exists(f"/sys/class/net/{node.veth}"):
            left.append(f"link {node.veth}")
    if os.path.exists(f"/sys/class/net/{info.bridge}"):
        left.append(f"bridge {info.bridge}")
    with open("/proc/self/mountinfo") as f:
        roots = [info.run_dir, os.path.join(info.base_dir, "nodes")]
        left += [f"mount {p}" for p in (line.split()[4] for line in f) if any(p.startswith(r) for r in roots)]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().decode(errors="replace")
            except OSError:
                continue
            if info.run_dir in argv or info.registry_addr in argv:
                left.append(f"process {pid}: {argv[:80]}")
    return left


class Tee(io.TextIOBase):
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def run_cell(ip: Any, cell: str) -> tuple[Any, str, str]:
    out, err = Tee(), Tee()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        result = ip.run_cell(cell)
    finally:
        sys.stdout, sys.stderr = saved
    return result, out.text, err.text
