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


class UnixRelay:
    """A plain TCP listener on *host* that relays each connection to a unix socket (a node's engine
    reached over TCP, as on a real cluster). Counts the connections it relayed."""

    def __init__(self, host: str, unix_path: str) -> None:
        import socket
        import threading

        self.unix_path = unix_path
        self.connections = 0
        self._server = socket.create_server((host, 0))
        self.address = f"tcp://{host}:{self._server.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.unix_path)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: Any, dst: Any) -> None:
        import contextlib
        import socket

        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        self._server.close()
