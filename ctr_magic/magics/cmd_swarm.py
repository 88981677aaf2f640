"""Cluster commands (the swarm backend): nodes, scale, update, and the service side of run and ps."""

from __future__ import annotations

import time
from typing import Any

from ..errors import InvalidArgument
from ..features import ClusterNodes, ClusterServices, RollingUpdates, Scaling, require, supports
from . import argtypes, imageref
from .context import Context
from .parsing import argument, command


def cluster_options(func: Any) -> Any:
    """The options of ``%ctr run`` that only a cluster backend takes."""
    decorators = [
        argument("--replicas", type=int, default=None, metavar="N", help="swarm: run N tasks of a service"),
        argument("--constraint", action="append", default=[], metavar="EXPR",
                 help="swarm: placement, e.g. node.labels.zone==a, node.role==worker"),
        argument("--reserve-cpus", default="", metavar="CPUS", help="swarm: CPUs reserved per task"),
        argument("--reserve-memory", default="", metavar="SIZE", help="swarm: memory reserved per task (64m)"),
        argument("--limit-cpus", default="", metavar="CPUS", help="swarm: CPU limit per task"),
        argument("--limit-memory", default="", metavar="SIZE", help="swarm: memory limit per task"),
    ]  # fmt: skip
    for decorate in reversed(decorators):
        func = decorate(func)
    return func


def is_cluster(ctx: Context) -> bool:
    return supports(ctx.service, ClusterServices)


def _resources(cpus: str, memory: str, what: str) -> Any:
    from ..swarm.specs import Resources, parse_cpus, parse_size

    return Resources(cpus=parse_cpus(cpus, f"--{what}-cpus") if cpus else 0.0,
                     memory=parse_size(memory, f"--{what}-memory") if memory else 0)


class _ProgressLines:
    """Rollout progress as one line per change, with the seconds since the start."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.started = time.monotonic()

    def __call__(self, step: Any) -> None:
        self.ctx.say(f"[{time.monotonic() - self.started:5.1f}s] {step}")


def run_service(ctx: Context, args: Any) -> Any:
    """``%ctr run`` on a cluster: a replicated service, its image pinned to a digest; waits for its tasks."""
    from ..swarm.specs import ServiceRequest
    from .cmd_containers import build_request

    service = require(ctx.service, ClusterServices, "%ctr run --replicas")
    for flag, given in (("--rm", args.rm), ("--net", args.net), ("--from", args.from_snapshot),
                        ("--host-dns", args.host_dns), ("--host-tz", args.host_tz)):
        if given:
            raise InvalidArgument(f"{flag} does not apply to a swarm service", hint="drop it (see %ctr run --help)")
    req = build_request(args)
    replicas = 1 if args.replicas is None else args.replicas
    spec = ServiceRequest(
        name=req.id, image=args.image, replicas=replicas, cmd=req.spec.cmd, env=req.spec.env,
        mounts=req.spec.mounts, labels=req.labels, constraints=list(args.constraint),
        reservations=_resources(args.reserve_cpus, args.reserve_memory, "reserve"),
        limits=_resources(args.limit_cpus, args.limit_memory, "limit"),
        work_dir=req.spec.work_dir, user=req.spec.user, hostname=req.spec.hostname,
    )  # fmt: skip
    spec.validate()
    ref = imageref.resolve(ctx, args.image)
    pinned, digest = service.pin_image(ref)
    ctx.session.record_image(args.image, digest)
    spec.image = pinned
    info = service.create_service(spec, wait=not args.detach, progress=None if args.detach else _ProgressLines(ctx))
    if args.detach:
        ctx.say(f"created service {info.name} ({replicas} replicas, {imageref.short_digest(digest)}…)")
        return None
    nodes = sorted({t.node for t in service.service_tasks(info.name, all=False) if t.node})
    ctx.say(f"started service {info.name}: {replicas} task(s) running on {', '.join(nodes) or 'no node'}")
    return None


def tasks_frame(ctx: Context, *, all: bool, service: str = "") -> Any:
    from .swarm_frames import swarm_tasks_frame

    tasks = require(ctx.service, ClusterServices, "%ctr ps").service_tasks(service, all=all)
    return swarm_tasks_frame(tasks)


@command("nodes", help="the swarm's nodes: role, availability, state, resources, labels (DataFrame)")
def nodes(ctx: Context, args: Any) -> Any:
    """Nodes of the cluster as the manager reports them."""
    from .swarm_frames import nodes_frame

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
        service.scale(name, count, wait=not args.detach, progress=None if args.detach else _ProgressLines(ctx))
        ctx.say(f"scaled {name} to {count}")


@command("update", help="swarm: rolling update of a service's image and env, with its progress")
@argument("service", help="service name")
@argument("--image", default="", help="new image (pinned to its digest)")
@argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE|KEY-", help="set (or remove: KEY-) a variable")
@argument("-d", "--detach", action="store_true", help="do not wait for the update to finish")
def update(ctx: Context, args: Any) -> None:
    """Replace the service's tasks one by one with the new image/env; stops at the first failing task."""
    service = require(ctx.service, RollingUpdates, "%ctr update")
    env = _parsed_env(args.env)
    image = ""
    if args.image:
        image = imageref.resolve(ctx, args.image)
    info = service.update_service(args.service, image=image, env=env, wait=not args.detach,
                                  progress=None if args.detach else _ProgressLines(ctx))
    ctx.say(f"updated {info.name}: {info.image}")


def add_node_endpoints(ctx: Context, specs: list[str]) -> None:
    """``--node NAME=SOCKET`` of ``%ctr use``: every node is checked before any is added."""
    from ..swarm.nodes import parse_node_option

    service = require(ctx.service, ClusterNodes, "%ctr use --node")
    for spec in specs:
        parse_node_option(spec)
    known = {n.name for n in service.nodes()}
    for spec in specs:
        name = spec.partition("=")[0].strip()
        if name not in known:
            raise InvalidArgument(f"--node {spec}: node {name} is not part of the swarm",
                                  hint=f"nodes: {', '.join(sorted(known))} (%ctr nodes)")
    for spec in specs:
        name, socket = service.add_node_endpoint(spec)
        ctx.say(f"node {name}: engine at {socket}")


def up_swarm(ctx: Context, n: int, home: str) -> Any:
    """``%ctr up --swarm N``: start (or reuse) the local test cluster and point the session at its manager."""
    from ..swarm.cluster import SwarmCluster, default_cluster_dir

    cluster = SwarmCluster(default_cluster_dir(home))
    info = cluster.status()
    if info is None:
        ctx.say(f"starting a swarm of {n} nodes in {cluster.base_dir} ...")
        info = cluster.up(n)
        ctx.session.cluster = cluster
    ctx.magic.backend = "swarm"
    ctx.magic.socket = info.manager_socket
    managers = [node.name for node in info.nodes if node.role == "manager"]
    ctx.say(f"swarm of {len(info.nodes)} nodes (manager {', '.join(managers)} at {info.manager_socket}); "
            f"registry {info.registry_addr}")
    return info


def down_swarm(ctx: Context) -> None:
    cluster = ctx.session.cluster
    ctx.session.disconnect()
    cluster.down()
    ctx.session.cluster = None
    ctx.say(f"stopped the swarm in {cluster.base_dir}")


def _parsed_env(items: list[str]) -> list[str]:
    out = []
    for item in items:
        out.append(item if item.endswith("-") and "=" not in item else argtypes.parse_env([item])[0])
    return out


__all__ = ["add_node_endpoints", "cluster_options", "down_swarm", "is_cluster", "run_service", "tasks_frame",
           "up_swarm"]
