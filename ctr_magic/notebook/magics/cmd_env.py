"""Session commands: use, up, down, status, version, lock."""

from __future__ import annotations

import os
from typing import Any

from ... import features
from ...connect import BACKENDS
from ...constants import BACKEND_CONTAINERD, BACKEND_DOCKER, DEFAULT_NAMESPACE, ENV_BACKEND, ENV_NAMESPACE
from ...errors import InvalidArgument
from . import imageref
from .context import Context
from .parsing import argument, command, group_help

HELP_ORDER = 10  # place of these commands in the %ctr --help overview

group_help("ns", "containerd namespaces (ns ls / ns rm)")


@command("use", help="choose backend, socket and namespace (no arguments: show them)")
@argument("backend", nargs="?", default=None, choices=BACKENDS, help="containerd, docker, apple or swarm")
@argument("--socket", default=None, help="daemon socket path (or tcp://host:port for containerd)")
@argument("--namespace", "-n", default=None, help="containerd namespace")
@argument("--node", action="append", default=[], metavar="NAME=SOCKET",
          help="swarm: the engine socket of node NAME (for exec, files and stats on its tasks)")
def use(ctx: Context, args: Any) -> None:
    """Point the session at a daemon; the same settings are `%config CtrMagic.backend/socket/namespace`."""
    magic = ctx.magic
    if args.namespace is not None:
        from .argtypes import check_id

        check_id(args.namespace, "namespace")
    changed = False
    for trait in ("backend", "socket", "namespace"):
        value = getattr(args, trait)
        if value is not None and value != getattr(magic, trait):
            setattr(magic, trait, value)
            changed = True
    if changed:
        ctx.session.service  # noqa: B018  (connect now so a bad backend fails here, not later)
    if args.node:
        from .swarm import add_node_endpoints

        add_node_endpoints(ctx, args.node)
    backend = magic.backend or os.environ.get(ENV_BACKEND) or BACKEND_CONTAINERD
    socket = magic.socket or _effective_socket(backend)
    namespace = magic.namespace or os.environ.get(ENV_NAMESPACE) or DEFAULT_NAMESPACE
    ctx.say(f"backend {backend}, socket {socket}" + (f", namespace {namespace}" if backend == "containerd" else ""))


def _effective_socket(backend: str) -> str:
    if backend == BACKEND_CONTAINERD:
        from ...connect import default_containerd_socket

        return default_containerd_socket()
    return "(backend default)"


def _environment(home: str | None, ctx: Context) -> Any:
    from ...env import Environment

    if ctx.session.environment is not None and not home:
        return ctx.session.environment
    return Environment(home or None)


@command("up", help="start the private containerd + registry (if not running) and use it")
@argument("--docker", action="store_true", help="also start a private dockerd on that containerd")
@argument("--home", default="", help="base directory (default: $CTR_MAGIC_HOME or /var/lib/ctr-magic)")
@argument("--swarm", type=int, default=None, metavar="N",
          help="instead: a local Swarm test cluster of N dockerd nodes (own netns each), and use it")
def up(ctx: Context, args: Any) -> Any:
    """Start ctr-magic's own containerd and registry (as `ctr-magic up` does) and point the session at it.

    Returns the environment info (`env = %ctr up`; `env.registry_addr` is the local registry).
    `%ctr down` stops it again, but only if this session started it.
    """
    if args.swarm is not None:
        from .swarm import up_swarm

        return up_swarm(ctx, args.swarm, args.home)
    env = _environment(args.home, ctx)
    info = env.status()
    started = False
    if info is None or (args.docker and not info.dockerd_pid):
        ctx.say(f"starting the private environment in {env.base_dir} ...")
        info = env.up(with_docker=args.docker)
        started = True
    ctx.session.environment = env
    ctx.session.started_environment = ctx.session.started_environment or started
    magic = ctx.magic
    backend = magic.backend or BACKEND_CONTAINERD
    if backend == BACKEND_DOCKER and info.dockerd_socket:
        magic.socket = info.dockerd_socket
    elif backend == BACKEND_CONTAINERD:
        magic.socket = info.containerd_socket
    ctx.say(_up_line(ctx, info, started))
    return info


def _up_line(ctx: Context, info: Any, started: bool) -> str:
    """What `%ctr up` started or found, in the session's backend's own terms (the daemon it talks to)."""
    service = ctx.service
    version = features.require(service, features.DaemonFacts, "%ctr up").version()
    number = getattr(version, "version", version)
    verb = "started" if started else "using"
    backend = getattr(service, "backend", BACKEND_CONTAINERD)
    if backend == BACKEND_CONTAINERD:
        return f"{verb} containerd {number} at {info.containerd_socket}; registry {info.registry_addr}"
    if backend == BACKEND_DOCKER:
        socket = getattr(service, "socket_path", "") or info.dockerd_socket
        return (f"{verb} dockerd {number} at {socket} (on the private containerd at {info.containerd_socket}); "
                f"registry {info.registry_addr}")
    return (f"{verb} the private containerd at {info.containerd_socket} and registry {info.registry_addr}; "
            f"the session's {backend} backend is {number} at {getattr(service, 'socket_path', '') or '?'}")


@command("down", help="stop the private environment this session started")
@argument("--force", action="store_true", help="stop it even if it was running before this session")
def down(ctx: Context, args: Any) -> None:
    """Stop the private containerd and registry: every task is killed and everything unmounted."""
    if ctx.session.cluster is not None:
        from .swarm import down_swarm

        down_swarm(ctx)
        if ctx.session.environment is None:
            return
    env = _environment("", ctx)
    if not ctx.session.started_environment and not args.force:
        ctx.say(f"leaving the environment in {env.base_dir} running (this session did not start it; --force stops it)")
        return
    ctx.session.close()
    env.down()
    ctx.session.environment = None
    ctx.session.started_environment = False
    ctx.say(f"stopped the environment in {env.base_dir}")


@command("status", help="the private environment and the connection")
def status(ctx: Context, args: Any) -> Any:
    """Return the running private environment's info (None when it is not running)."""
    env = _environment("", ctx)
    info = env.status()
    if info is None:
        ctx.say(f"no private environment running in {env.base_dir} (%ctr up starts one)")
    else:
        ctx.say(f"containerd at {info.containerd_socket}; registry {info.registry_addr}")
    return info


@command("version", help="the daemon's version")
def version(ctx: Context, args: Any) -> None:
    """Ask the connected daemon for its version."""
    v = features.require(ctx.service, features.DaemonFacts, "%ctr version").version()
    ctx.say(f"{getattr(ctx.service, 'backend', 'daemon')} {getattr(v, 'version', v)}"
            + (f" ({v.revision})" if getattr(v, "revision", "") else ""))


@command("lock", help="write ctr-lock.json pinning every image the session used")
@argument("--show", action="store_true", help="show the lock file instead of writing it")
@argument("--delete", action="store_true", help="delete the lock file (refs float again)")
@argument("--replace", action="store_true", help="drop entries this session did not use")
def lock(ctx: Context, args: Any) -> Any:
    """Pin image refs to digests. With the file present, pulls and runs use the pinned digests."""
    from ..lock import LockFile, write_lock

    path = imageref.lock_path(ctx)
    if args.show and args.delete:
        raise InvalidArgument("--show and --delete exclude each other")
    if args.delete:
        if path.exists():
            path.unlink()
            ctx.say(f"deleted {path}")
        else:
            ctx.say(f"no lock file at {path}")
        return None
    if args.show:
        existing = LockFile.load(path)
        return dict(existing.images) if existing is not None else {}
    if not ctx.session.images_used:
        raise InvalidArgument("this session used no images yet", hint="pull or run an image first")
    written = write_lock(path, ctx.session.images_used, merge=not args.replace)
    ctx.say(f"wrote {path.name}: {len(written.images)} image(s) pinned")
    return None


def _namespaced_service(ctx: Context) -> Any:
    return features.require(ctx.service, features.Namespaces, f"%ctr {ctx.command}")


@command("ns ls", help="the containerd namespaces")
def ns_ls(ctx: Context, args: Any) -> list[str]:
    """List namespaces; the session's own is marked with `*` (`names = %ctr ns ls` returns them)."""
    service = _namespaced_service(ctx)
    names = service.namespaces()
    for name in names:
        ctx.say(("* " if name == service.namespace else "  ") + name)
    return names


@command("ns rm", help="delete an empty containerd namespace (default: the session's)")
@argument("name", nargs="?", default="", help="namespace to delete (default: the one in use)")
def ns_rm(ctx: Context, args: Any) -> None:
    """containerd refuses a namespace that still holds images, containers, snapshots or content."""
    service = _namespaced_service(ctx)
    name = args.name or service.namespace
    service.delete_namespace(name)
    ctx.say(f"deleted namespace {name}")
