"""The swarm side of commands other modules declare: run's cluster options, ps as tasks, use --node,
up --swarm / down. (The swarm's own commands are in ``cmd_swarm``.)"""

from __future__ import annotations

import time
from typing import Any

from ...errors import InvalidArgument
from ...features import ClusterNodes, ClusterServices, require, supports
from . import imageref
from .context import Context
from .parsing import argument


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
    from ...swarm.specs import Resources, parse_cpus, parse_size

    return Resources(cpus=parse_cpus(cpus, f"--{what}-cpus") if cpus else 0.0,
                     memory=parse_size(memory, f"--{what}-memory") if memory else 0)


class ProgressLines:
    """Rollout progress as one line per change, with the seconds since the start."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.started = time.monotonic()

    def __call__(self, step: Any) -> None:
        self.ctx.say(f"[{time.monotonic() - self.started:5.1f}s] {step}")


def run_service(ctx: Context, args: Any, req: Any) -> Any:
    """``%ctr run`` on a cluster: a replicated service, its image pinned to a digest; waits for its tasks.

    *req* is the CreateContainerRequest run built (and so validated) from the same arguments.
    """
    from ...swarm.specs import ServiceRequest

    service = require(ctx.service, ClusterServices, "%ctr run --replicas")
    for flag, given in (("--rm", args.rm), ("--net", args.net), ("--from", args.from_snapshot),
                        ("--host-dns", args.host_dns), ("--host-tz", args.host_tz)):
        if given:
            raise InvalidArgument(f"{flag} does not apply to a swarm service", hint="drop it (see %ctr run --help)")
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
    info = service.create_service(spec, wait=not args.detach, progress=None if args.detach else ProgressLines(ctx))
    if args.detach:
        ctx.say(f"created service {info.name} ({replicas} replicas, {imageref.short_digest(digest)}…)")
        return None
    nodes = sorted({t.node for t in service.service_tasks(info.name, all=False) if t.node})
    ctx.say(f"started service {info.name}: {replicas} task(s) running on {', '.join(nodes) or 'no node'}")
    return None


def tasks_frame(ctx: Context, *, all: bool, labels: dict[str, str] | None = None) -> Any:
    """``%ctr ps`` on a cluster: one row per task with its node (``--label``: of services with those labels)."""
    from ..swarm_frames import swarm_tasks_frame

    cluster = require(ctx.service, ClusterServices, "%ctr ps")
    tasks = cluster.service_tasks(all=all)
    if labels:
        wanted = {s.name for s in cluster.services()
                  if all_labels_match(s.labels, labels)}
        tasks = [t for t in tasks if t.service in wanted]
    return swarm_tasks_frame(tasks)


def all_labels_match(have: dict[str, str], wanted: dict[str, str]) -> bool:
    """Every wanted label present (an empty value matches any)."""
    return all(key in have and (value == "" or have[key] == value) for key, value in wanted.items())


def add_node_endpoints(ctx: Context, specs: list[str]) -> None:
    """``--node NAME=SOCKET`` of ``%ctr use``: every node is checked before any is added."""
    from ...swarm.nodes import parse_node_option

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
    from ...swarm.cluster import SwarmCluster, default_cluster_dir

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
    """Stop the cluster this session started."""
    cluster = ctx.session.cluster
    ctx.session.disconnect()
    cluster.down()
    ctx.session.cluster = None
    ctx.say(f"stopped the swarm in {cluster.base_dir}")


__all__ = ["ProgressLines", "add_node_endpoints", "cluster_options", "down_swarm", "is_cluster", "run_service",
           "tasks_frame", "up_swarm"]
