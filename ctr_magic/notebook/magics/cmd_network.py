"""``%ctr net up|down``: attach a running container to the project's CNI bridge."""

from __future__ import annotations

from typing import Any

from .common import remove_network, setup_network
from .context import Context
from .parsing import argument, command, group_help

HELP_ORDER = 60  # place of these commands in the %ctr --help overview

group_help("net", "attach containers to the CNI bridge network (net up / net down)")


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
