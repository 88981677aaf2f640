"""The configuration files the environment writes for its daemons (regenerated on every ``up``)."""

from __future__ import annotations

import json
import secrets

from ..constants import DEFAULT_RUNTIME, DEFAULT_SNAPSHOTTER
from .state import EnvPaths

# Plugins that only slow start-up down or log errors on a plain machine.
_DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
)


def containerd_toml(paths: EnvPaths) -> str:
    """containerd's config: own root, state and sockets, no CRI, no debug or metrics listeners."""
    disabled = ", ".join(f'"{p}"' for p in _DISABLED_PLUGINS)
    sock = paths.containerd_socket
    return f"""\
# Written by ctr-magic; regenerated on every `up`.
version = 2
root = "{paths.base_dir / "containerd" / "root"}"
state = "{paths.run_dir / "containerd"}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.gc.v1.scheduler"]
    pause_threshold = 0.02
    deletion_threshold = 0
    mutation_threshold = 100
    schedule_delay = "0s"
    startup_delay = "100ms"
  [plugins."io.containerd.internal.v1.opt"]
    path = "{paths.base_dir / "containerd" / "opt"}"
  # Without CRI, clients pick runtime and snapshotter: ctr-magic and ctr default to
  # {DEFAULT_RUNTIME} (runc) and the {DEFAULT_SNAPSHOTTER} snapshotter.
"""


def registry_yaml(paths: EnvPaths, addr: str) -> str:
    """docker-registry's config: filesystem storage under the base dir, deletes enabled, on *addr*."""
    return f"""\
# Written by ctr-magic; regenerated on every `up`.
version: 0.1
log:
  level: info
  fields:
    service: ctr-magic-registry
storage:
  filesystem:
    rootdirectory: {paths.base_dir / "registry" / "data"}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: {secrets.token_hex(16)}
health:
  storagedriver:
    enabled: false
"""


def dockerd_json(paths: EnvPaths) -> str:
    """dockerd's config file: keeps its identity key out of /etc/docker."""
    return json.dumps({"deprecated-key-path": str(paths.base_dir / "docker-key.json")}) + "\n"


def dockerd_argv(dockerd: str, paths: EnvPaths, containerd_socket: str) -> list[str]:
    """dockerd on our containerd, with its own roots and socket, and no host networking changes."""
    return [
        dockerd,
        "--containerd", containerd_socket,
        "--data-root", str(paths.docker_root),
        "--exec-root", str(paths.docker_exec_root),
        "--pidfile", str(paths.run_dir / "docker.pid"),
        "-H", f"unix://{paths.docker_socket}",
        "--config-file", str(paths.base_dir / "dockerd.json"),
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--bridge=none",
        "--userland-proxy=false",
    ]  # fmt: skip


__all__ = ["containerd_toml", "dockerd_argv", "dockerd_json", "registry_yaml"]
