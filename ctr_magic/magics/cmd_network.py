"""``%ctr net up|down``: attach a running container to the project's CNI bridge."""

from __future__ import annotations

from typing import Any

from .. import features
from ..types import NetworkSetupRequest
from .context import Context
from .parsing import argument, command, group_help

group_help("net", "attach containers to the CNI bridge network (net up / net down)")


def _request(ctx: Context, container_id: str) -> NetworkSetupRequest:
    """CNI plugins from the host (containernetworking-plugins); configs from ``%config
    CtrMagic.cni_conf_dir``, or the backend's default bridge network when that is empty."""
    from ..daemon import cni_bin_dir

    return NetworkSetupRequest(container_id=container_id, cni_bin_dir=cni_bin_dir(),
                               cni_conf_dir=ctx.magic.cni_conf_dir)


def setup_network(ctx: Context, container_id: str) -> str:
    ctx.service.setup_network(_request(ctx, container_id))
    service = ctx.service
    ip = service.container_ip(container_id) if features.supports(service, features.ContainerAddresses) else ""
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
