"""``%ctr net up|down``: attach a running container to the project's CNI bridge."""

from __future__ import annotations

import os
from typing import Any

from ..constants import ENV_HOME
from ..types import NetworkSetupRequest
from .context import Context
from .parsing import argument, command, group_help

group_help("net", "attach containers to the CNI bridge network (net up / net down)")


def conf_dir(ctx: Context) -> str:
    """The CNI config dir: ``$CTR_MAGIC_HOME/cni/net.d`` (a default bridge config is written once)."""
    from ..daemon import default_base_dir

    base = os.environ.get(ENV_HOME) or str(default_base_dir())
    path = os.path.join(base, "cni", "net.d")
    if not os.path.isdir(path) or not any(name.endswith((".conflist", ".conf")) for name in os.listdir(path)):
        os.makedirs(path, exist_ok=True)
        ctx.service.write_default_network_config(path)
    return path


def _request(ctx: Context, container_id: str) -> NetworkSetupRequest:
    from ..daemon import cni_bin_dir

    return NetworkSetupRequest(container_id=container_id, cni_bin_dir=cni_bin_dir(), cni_conf_dir=conf_dir(ctx))


def setup_network(ctx: Context, container_id: str) -> str:
    ctx.service.setup_network(_request(ctx, container_id))
    ip = ""
    container_ip = getattr(ctx.service, "container_ip", None)
    if container_ip is not None:
        ip = container_ip(container_id)
    ctx.say(f"{container_id} is on the bridge network" + (f" at {ip}" if ip else ""))
    return ip


def remove_network(ctx: Context, container_id: str) -> None:
    ctx.service.remove_network(_request(ctx, container_id))


@command("net up", help="connect a running container to the bridge network; returns its IP",
         completes="container")
@argument("id", help="container id (its task must be running)")
def net_up(ctx: Context, args: Any) -> str:
    """Run the CNI plugins for the container's network namespace; `ip = %ctr net up ID`."""
    return setup_network(ctx, args.id)


@command("net down", help="disconnect a container from the bridge network", completes="container")
@argument("id", help="container id")
def net_down(ctx: Context, args: Any) -> None:
    """Remove the container's network attachment (safe to repeat)."""
    remove_network(ctx, args.id)
    ctx.say(f"{args.id} left the bridge network")
