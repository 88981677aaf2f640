"""Swarm commands: nodes, scale, update (the service side of run, ps and use is in ``swarm``)."""

from __future__ import annotations

from typing import Any

from ...errors import InvalidArgument
from ...features import ClusterNodes, RollingUpdates, Scaling, require
from . import argtypes, imageref
from .context import Context
from .parsing import argument, command
from .swarm import ProgressLines

HELP_ORDER = 90  # place of these commands in the %ctr --help overview


@command("nodes", help="the swarm's nodes: role, availability, state, resources, labels (DataFrame)")
def nodes(ctx: Context, args: Any) -> Any:
    """Nodes of the cluster as the manager reports them."""
    from ..swarm_frames import nodes_frame

    return nodes_frame(require(ctx.service, ClusterNodes, "%ctr nodes").nodes())


@command("scale", help="swarm: set the number of tasks of services (SERVICE=N ...)")
@argument("targets", nargs="+", metavar="SERVICE=N", help="service and its wanted number of tasks")
@argument("-d", "--detach", action="store_true", help="do not wait for the tasks")
def scale(ctx: Context, args: Any) -> None:
    """Scale services up or down and wait until the tasks run (or are gone)."""
    service = require(ctx.service, Scaling, "%ctr scale")
    wanted = []
    for target in args.targets:
        name, sep, count = target.partition("=")
        if not sep or not name or not count.isdigit():
            raise InvalidArgument(f"{target!r} is not SERVICE=N", hint="e.g. %ctr scale web=3")
        wanted.append((name, int(count)))
    for name, count in wanted:
        service.scale(name, count, wait=not args.detach, progress=None if args.detach else ProgressLines(ctx))
        ctx.say(f"scaled {name} to {count}")


@command("update", help="swarm: rolling update of a service's image and env, with its progress")
@argument("service", help="service name")
@argument("--image", default="", help="new image (pinned to its digest)")
@argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE|KEY-", help="set (or remove: KEY-) a variable")
@argument("-d", "--detach", action="store_true", help="do not wait for the update to finish")
def update(ctx: Context, args: Any) -> None:
    """Replace the service's tasks one by one with the new image/env; stops at the first failing task."""
    service = require(ctx.service, RollingUpdates, "%ctr update")
    env = [item if item.endswith("-") and "=" not in item else argtypes.parse_env([item])[0] for item in args.env]
    image = imageref.resolve(ctx, args.image) if args.image else ""
    info = service.update_service(args.service, image=image, env=env, wait=not args.detach,
                                  progress=None if args.detach else ProgressLines(ctx))
    ctx.say(f"updated {info.name}: {info.image}")
