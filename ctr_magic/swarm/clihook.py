"""What ``ctr-magic up --swarm N`` / ``down`` do with the test cluster (the CLI only prints)."""

from __future__ import annotations

import json
import os

from .cluster import SwarmCluster, default_cluster_dir


def swarm_up(home: str | os.PathLike[str], n: int, *, as_json: bool = False) -> str:
    """Start (or reuse) the cluster under ``<home>/swarm``; the text to print."""
    info = SwarmCluster(default_cluster_dir(home)).up(n)
    if as_json:
        return json.dumps(info.to_dict(), indent=2)
    lines = [f"swarm manager:     {info.manager_socket}", f"registry:          {info.registry_addr}",
             f"bridge:            {info.bridge} ({info.subnet})"]
    lines += [f"{node.name + ':':<18} {node.role:<8} {node.address:<15} {node.socket}" for node in info.nodes]
    lines += ["", f"export DOCKER_HOST=unix://{info.manager_socket}",
              "# in a notebook: %ctr use swarm --socket " + info.manager_socket]
    return "\n".join(lines)


def swarm_down(home: str | os.PathLike[str]) -> None:
    """Remove the cluster under ``<home>/swarm`` if there is one."""
    SwarmCluster(default_cluster_dir(home)).down()


__all__ = ["swarm_down", "swarm_up"]
