"""containerd's own ``ctr`` on the environment's socket: the readiness check and teardown's task listing.

Teardown goes through ``ctr`` rather than our gRPC client so that it works even when the client
(or its generated stubs) is what broke.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from .binaries import find_binary
from .processes import daemon_env
from .state import EnvPaths


class CtrCli:
    """``ctr --address <our socket>`` with a timeout; a timeout is returned as exit status 124."""

    def __init__(self, paths: EnvPaths) -> None:
        self.paths = paths

    def run(self, *args: str, namespace: str | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        cmd = [find_binary("ctr"), "--address", str(self.paths.containerd_socket)]
        if namespace:
            cmd += ["--namespace", namespace]
        cmd += list(args)
        try:
            return subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, env=daemon_env(), stdin=subprocess.DEVNULL,
                check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(cmd, 124, "", f"timed out after {timeout}s")

    def answers(self) -> bool:
        """True when containerd's socket exists and ``ctr version`` gets an answer."""
        if not self.paths.containerd_socket.exists():
            return False
        return self.run("version", timeout=5.0).returncode == 0

    def namespaces(self) -> list[str]:
        """containerd's namespaces; empty if it does not answer."""
        res = self.run("namespaces", "list", "-q", timeout=10.0)
        return res.stdout.split() if res.returncode == 0 else []

    def tasks(self, namespaces: Sequence[str]) -> list[tuple[str, str, str]]:
        """(namespace, id, status) of every task in *namespaces*; empty if containerd does not answer."""
        out = []
        for ns in namespaces:
            listing = self.run("tasks", "list", namespace=ns, timeout=10.0)
            for line in listing.stdout.splitlines()[1:]:
                parts = line.split()
                if len(parts) >= 3:
                    out.append((ns, parts[0], parts[2]))
        return out


__all__ = ["CtrCli"]
