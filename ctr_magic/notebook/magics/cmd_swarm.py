"""Swarm commands: nodes, scale, update (the service side of run, ps and use is in ``swarm``)."""

from __future__ import annotations

from typing import Any

from ...errors import InvalidArgument
from ...features import ClusterNodes, ResourceUpdates, RollingUpdates, Scaling, require, supports
from . import argtypes, imageref
from .context import Context
from .limitopts import limits_from, update_limit_options
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


@command("update", help="new limits for a running container (--memory, --cpus ...), or roll a swarm service "
                        "to a new image/env", completes="container")
@argument("service", help="container id, or a swarm service name")
@argument("--image", default="", help="swarm: new image (pinned to its digest)")
@argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE|KEY-",
          help="swarm: set (or remove: KEY-) a variable")
@argument("-d", "--detach", action="store_true", help="swarm: do not wait for the update to finish")
@update_limit_options
def update(ctx: Context, args: Any) -> None:
    """With --memory/--memory-swap/--cpus/--cpu-shares/--pids-limit: new limits for a running container
    (containerd: Tasks.Update, kept for its next start; Docker: /containers/{id}/update).
    With --image/-e on a swarm: replace the service's tasks one by one; stops at the first failing task.
    """
    limits = limits_from(args)
    if not limits.is_empty():
        if args.image or args.env:
            raise InvalidArgument("limits and --image/-e cannot be combined",
                                  hint="a service's limits are set at run (--limit-cpus, --limit-memory)")
        require(ctx.service, ResourceUpdates, "%ctr update").update_container(args.service, limits)
        ctx.say(f"updated {args.service}")
        return
    if not (args.image or args.env) and not supports(ctx.service, RollingUpdates):
        raise InvalidArgument("nothing to update", hint="give --memory, --cpus, --cpu-shares or --pids-limit")
    service = require(ctx.service, RollingUpdates, "%ctr update")
    env = [item if item.endswith("-") and "=" not in item else argtypes.parse_env([item])[0] for item in args.env]
    image = imageref.resolve(ctx, args.image) if args.image else ""
    info = service.update_service(args.service, image=image, env=env, wait=not args.detach,
                                  progress=None if args.detach else ProgressLines(ctx))
    ctx.say(f"updated {info.name}: {info.image}")
