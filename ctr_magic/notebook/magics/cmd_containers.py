"""Container and task commands: create, run, ps, start, stop, kill, rm, logs, tasks, inspect."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import secrets
from typing import Any

from ... import features
from ...errors import CtrError, FailedPrecondition, Interrupted, InvalidArgument, NotFound
from ...reference import parse_reference
from ...types import (
    ContainerSpec,
    CreateContainerRequest,
    DeleteContainerOptions,
    DeleteTaskOptions,
    StartTaskOptions,
    StopTaskOptions,
    TaskStatus,
)
from . import argtypes, imageref
from .attached import drive_attached
from .common import CommandFailed, remove_network, report_exit, setup_network, stdin_data, strip_dashes
from .context import Context
from .failure import redact
from .limitopts import limit_options, limits_from, oom_reason
from .parsing import CELL_OPTIONAL, argument, command
from .streams import TextSink
from .swarm import cluster_options, is_cluster, run_service
from .swarm import tasks_frame as cluster_tasks_frame

HELP_ORDER = 30  # place of these commands in the %ctr --help overview


# -- shared option declarations ------------------------------------------------------------------


def container_options(func: Any) -> Any:
    """Options shared by create and run (applied as decorators, bottom-up)."""
    decorators = [
        argument("--name", default="", help="container id (default: image name + random suffix)"),
        argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]",
                 help="environment variable; a bare KEY takes the kernel's value (keeps secrets out of cells)"),
        argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]",
                 help="bind-mount a host path (relative to the notebook's directory)"),
        argument("-w", "--workdir", default="", help="working directory in the container"),
        argument("-u", "--user", default="", help="user[:group] by name or id"),
        argument("--label", action="append", default=[], metavar="KEY=VALUE", help="container label"),
        argument("--hostname", default="", help="host name inside the container"),
        argument("--host-dns", action="store_true", help="use the host's resolv.conf"),
        argument("--host-tz", action="store_true", help="use the host's time zone"),
        argument("--from", dest="from_snapshot", default="", metavar="SNAPSHOT",
                 help="start from a committed snapshot (a %ctr checkpoint version) instead of the image"),
        limit_options,
        argument("image", help="image reference (pulled when absent; a lock file pins it)"),
        argument("cmd", nargs=argparse.REMAINDER, help="command and arguments (default: the image's)"),
    ]  # fmt: skip
    for decorate in reversed(decorators):
        func = decorate(func)
    return func


def _default_name(image: str) -> str:
    try:
        base = parse_reference(image).path.rsplit("/", 1)[-1]
    except CtrError:
        base = "box"
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", base)[:40] or "box"
    return f"{base}-{secrets.token_hex(3)}"


def build_request(args: Any) -> CreateContainerRequest:
    """Everything create/run need, validated before any daemon call (bad input leaves nothing)."""
    parse_reference(args.image)
    name = argtypes.check_id(args.name) if args.name else _default_name(args.image)
    spec = ContainerSpec(
        cmd=strip_dashes(list(args.cmd)),
        env=argtypes.parse_env(args.env),
        work_dir=args.workdir,
        user=args.user,
        mounts=[argtypes.parse_volume(v) for v in args.volume],
        hostname=args.hostname,
        host_dns=args.host_dns,
        host_timezone=args.host_tz,
        limits=limits_from(args),
    )
    return CreateContainerRequest(id=name, image_ref=args.image, labels=argtypes.parse_labels(args.label), spec=spec)


def _create(ctx: Context, req: CreateContainerRequest, from_snapshot: str = "") -> Any:
    typed = req.image_ref
    req = dataclasses.replace(req, image_ref=imageref.ensure(ctx, typed))
    service = ctx.service
    if not from_snapshot:
        return service.create_container(req)
    snapshotter = ctx.snapshotter
    service.prepare_snapshot(snapshotter, req.id, from_snapshot)
    try:
        return service.create_container_from_snapshot(
            dataclasses.replace(req, snapshot_id=req.id, snapshotter=snapshotter)
        )
    except BaseException:
        if features.supports(service, features.SnapshotRemoval):
            with contextlib.suppress(Exception):
                service.remove_snapshot(snapshotter, req.id)
        raise


def _log_path(ctx: Context, container_id: str) -> str:
    service = ctx.service
    return service.log_path_for(container_id) if features.supports(service, features.LogFiles) else ""


def _detach_network(ctx: Context, container_id: str) -> None:
    """Undo ``--net``/``net up`` if it was done; a container without a network is left alone."""
    service = ctx.service
    if features.supports(service, features.ContainerAddresses) and not service.has_network(container_id):
        return
    with contextlib.suppress(CtrError):
        remove_network(ctx, container_id)


def _discard(ctx: Context, container_id: str, *, network: bool = False) -> None:
    """Remove a container this command made (its task and network too), ignoring what is gone."""
    service = ctx.service
    if network:
        _detach_network(ctx, container_id)
    with contextlib.suppress(NotFound):
        service.delete_task(container_id, DeleteTaskOptions(force=True))
    with contextlib.suppress(NotFound):
        service.delete_container(container_id, DeleteContainerOptions(cleanup_snapshot=True, force=True))


def _start(ctx: Context, container_id: str, *, net: bool) -> None:
    ctx.service.start_container(container_id, StartTaskOptions(log_path=_log_path(ctx, container_id)))
    if net:
        setup_network(ctx, container_id)


# -- commands ------------------------------------------------------------------------------------


@command("create", help="create a container (not started)", completes="container")
@container_options
def create(ctx: Context, args: Any) -> None:
    """Create a container from an image; `%ctr start NAME` runs it."""
    req = build_request(args)
    info = _create(ctx, req, args.from_snapshot)
    ctx.say(f"created {info.id}")


@command("run", help="create and start a container; its stdout/stderr stream into the cell", cell=CELL_OPTIONAL,
         completes="container")
@argument("--rm", action="store_true", help="remove the container when it exits")
@argument("-d", "--detach", action="store_true", help="start in the background (see %ctr logs)")
@argument("--net", action="store_true", help="attach to the project's CNI bridge network")
@argument("--check", action="store_true", help="fail the cell when the command exits non-zero")
@argument("-i", "--interactive", action="store_true",
          help="feed the cell body to the container's stdin (%%ctr run -i IMAGE ...)")
@argument("--stdin", default="", metavar="NAME", help="feed the variable NAME (str, bytes or a file) to stdin")
@argument("-t", "--tty", action="store_true", help="give the process a terminal (output comes as one stream)")
@cluster_options
@container_options
def run(ctx: Context, args: Any) -> None:
    """Create and start a container.

    In the foreground (default) the process's own stdout and stderr stream into the cell as it
    writes them (stderr in red) until it exits; the stop button kills it. `%%ctr run IMAGE ...`
    (or -i) gives it the cell body as stdin, --stdin NAME a variable. With -d it keeps running
    and writes to its log; `%ctr logs NAME` shows it.
    """
    if args.rm and args.detach:
        raise InvalidArgument("--rm and -d cannot be combined", hint="drop -d to wait, or --rm to keep it")
    stdin = _run_stdin(ctx, args)
    req = build_request(args)
    if args.replicas is not None or is_cluster(ctx):
        return run_service(ctx, args, req)
    req.spec.tty = args.tty
    req.spec.stdin = stdin is not None
    if args.detach:
        info = _create(ctx, req, args.from_snapshot)
        try:
            _start(ctx, info.id, net=args.net)
        except BaseException:
            _discard(ctx, info.id, network=args.net)
            raise
        ctx.say(f"started {info.id}")
        return
    attacher = features.require(ctx.service, features.Attaching, "%ctr run")
    info = _create(ctx, req, args.from_snapshot)
    container_id = info.id
    try:
        session = attacher.start_attached(container_id, stdin=stdin is not None, terminal=args.tty)
    except BaseException:
        _discard(ctx, container_id, network=False)
        raise
    interrupted = False
    code = 0
    reason = ""
    try:
        if args.net:
            setup_network(ctx, container_id)
        code = drive_attached(session, stdin, log_path="" if args.rm else _log_path(ctx, container_id))
        reason = oom_reason(ctx, container_id, code)  # before the task (and its cgroup) goes
    except KeyboardInterrupt:
        interrupted = True
    finally:
        session.close()  # kills the process if it still runs
        if args.rm:
            _discard(ctx, container_id, network=args.net)
    if interrupted:
        raise Interrupted(f"interrupted: killed {container_id}" + (" and removed it" if args.rm else ""))
    report_exit(ctx, container_id, code, args.check, reason=reason)


def _run_stdin(ctx: Context, args: Any) -> Any:
    """The bytes for the container's stdin (cell body or --stdin NAME), or None for no stdin."""
    if args.detach and (args.interactive or args.stdin or ctx.cell is not None or args.tty):
        raise InvalidArgument("-d runs in the background: it takes no stdin and no terminal",
                              hint="drop -d to feed it input")
    data = stdin_data(ctx, args)
    if args.interactive and data is None:
        raise InvalidArgument("-i needs input", hint="write %%ctr run -i IMAGE ... with the input as the cell body, "
                                                     "or give --stdin NAME")
    return data


def stream_logs(ctx: Context, container_id: str, *, follow: bool) -> None:
    """Copy the container's log into the cell as it grows.

    containerd's service yields chunks; a backend whose ``logs`` writes to sys.stdout/sys.stderr
    itself (and returns None) lands in the cell just the same.
    """
    sink = TextSink("stdout")
    try:
        chunks = features.require(ctx.service, features.Logs, f"%ctr {ctx.command}").logs(container_id, follow=follow)
        for chunk in chunks or ():
            sink(chunk)
    finally:
        sink.close()


@command("start", help="start a created container in the background", completes="container")
@argument("id", help="container id")
@argument("--net", action="store_true", help="attach to the project's CNI bridge network")
def start(ctx: Context, args: Any) -> None:
    """Start a container's task; its output goes to a log file (`%ctr logs ID`)."""
    ctx.service.get_container(args.id)
    with contextlib.suppress(NotFound):
        task = ctx.service.get_task_info(args.id)
        if task.status == TaskStatus.RUNNING:
            raise FailedPrecondition(f"container {args.id} is already running")
        ctx.service.delete_task(args.id, DeleteTaskOptions(force=True))  # a stopped task from an earlier run
    _start(ctx, args.id, net=args.net)
    ctx.say(f"started {args.id}")


@command("stop", help="stop running containers (SIGTERM, then wait)", completes="container")
@argument("ids", nargs="+", metavar="ID", help="container ids")
@argument("-t", "--timeout", type=argtypes.parse_duration, default=None, help="seconds to wait (default 10)")
@argument("-s", "--signal", type=argtypes.parse_signal, default=15, help="signal to send (default TERM)")
@argument("--force", action="store_true", help="SIGKILL when the timeout passes")
def stop(ctx: Context, args: Any) -> None:
    """Stop containers; without --force a container that ignores the signal is an error."""
    timeout = args.timeout if args.timeout is not None else ctx.magic.stop_timeout
    for container_id in args.ids:
        ctx.service.stop_container(container_id, StopTaskOptions(signal=args.signal, timeout=timeout,
                                                                 force=args.force))
        ctx.say(f"stopped {container_id}")


@command("kill", help="send a signal to a container's task", completes="container")
@argument("id", help="container id")
@argument("-s", "--signal", type=argtypes.parse_signal, default=15, help="signal (default TERM)")
@argument("--all", action="store_true", help="signal every process of the task, exec processes too")
def kill(ctx: Context, args: Any) -> None:
    """Send a signal without waiting for the task to exit."""
    features.require(ctx.service, features.Signals, "%ctr kill").kill_task(args.id, args.signal, all=args.all)
    ctx.say(f"sent signal {args.signal} to {args.id}")


@command("rm", help="remove containers (and their snapshots)", completes="container")
@argument("ids", nargs="+", metavar="ID", help="container ids")
@argument("-f", "--force", action="store_true", help="kill a running task first")
@argument("--keep-snapshot", action="store_true", help="keep the container's snapshot")
def rm(ctx: Context, args: Any) -> None:
    """Remove containers; a running one needs -f. Every id is checked before anything is removed."""
    for container_id in args.ids:
        ctx.service.get_container(container_id)
    for container_id in args.ids:
        mounted = ctx.session.mounts.pop(container_id, None)
        if mounted is not None:
            mounted.unmount()
        ctx.service.delete_container(
            container_id, DeleteContainerOptions(cleanup_snapshot=not args.keep_snapshot, force=args.force)
        )
        ctx.say(f"removed {container_id}")


@command("ps", help="list containers with their task status, as a DataFrame")
@argument("-a", "--all", action="store_true", help="include containers that are not running")
@argument("--label", action="append", default=[], metavar="KEY[=VALUE]", help="only containers with this label")
@argument("--labels", dest="all_labels", action="store_true",
          help="show every label (default: only yours, not the runtime's bookkeeping)")
def ps(ctx: Context, args: Any) -> Any:
    """Containers joined with their tasks: id, image, status (category), pid, exit code, ip, created."""
    from ..frames import containers_frame

    labels = argtypes.parse_labels(args.label, allow_bare=True)
    service = ctx.service
    if is_cluster(ctx):
        return cluster_tasks_frame(ctx, all=args.all, labels=labels)
    if labels:
        key, value = next(iter(labels.items()))
        containers = service.list_containers_by_label(key, value)
        containers = [c for c in containers if all(_label_matches(c.labels, k, v) for k, v in labels.items())]
    else:
        containers = service.list_containers()
    tasks = service.list_tasks()
    if features.supports(service, features.ContainerAddresses):
        ips = service.container_ips()
        containers = [c if c.ip or c.id not in ips else dataclasses.replace(c, ip=ips[c.id]) for c in containers]
    df = containers_frame(containers, tasks, all_labels=args.all_labels)
    if not args.all:
        df = df[df["status"].isin(["running", "paused"])].reset_index(drop=True)
    return df


def _label_matches(labels: dict[str, str], key: str, value: str) -> bool:
    return key in labels and (value == "" or labels[key] == value)


@command("tasks", help="list tasks as a DataFrame")
@argument("--filter", default="", help="containerd filter, e.g. status==running")
def tasks(ctx: Context, args: Any) -> Any:
    """Tasks (running processes of containers): container, pid, status, exit code."""
    from ...types import ListTasksOptions
    from ..frames import tasks_frame

    return tasks_frame(ctx.service.list_tasks(ListTasksOptions(filter=args.filter)))


@command("logs", help="show a container's output (-f follows it)", completes="container")
@argument("id", help="container id")
@argument("-f", "--follow", action="store_true", help="keep streaming until the task exits (stop button ends it)")
def logs(ctx: Context, args: Any) -> None:
    """Print the log of a container started by %ctr run -d / %ctr start."""
    try:
        stream_logs(ctx, args.id, follow=args.follow)
    except KeyboardInterrupt:
        if not args.follow:
            raise


@command("inspect", help="details of a container (with its task) or an image", completes="container")
@argument("target", help="container id or image reference")
def inspect(ctx: Context, args: Any) -> dict[str, Any]:
    """Return a dict describing a container (and its task) or, failing that, an image."""
    service = ctx.service
    try:
        info = service.get_container(args.target)
    except (NotFound, InvalidArgument):
        info = None
    if info is not None:
        out: dict[str, Any] = {"kind": "container", **_plain(info)}
        try:
            out["task"] = _plain(service.get_task_info(args.target))
        except NotFound:
            out["task"] = None
        return out
    try:
        image = service.get_image(args.target)
    except (NotFound, InvalidArgument):
        raise NotFound(f"no container or image named {args.target!r}", hint="see %ctr ps -a and %ctr images") from None
    return {"kind": "image", **_plain(image)}


def _plain(obj: Any) -> dict[str, Any]:
    """A dataclass as a dict of plain values (enums as text, secrets in env redacted)."""
    data = dataclasses.asdict(obj)

    def clean(value: Any) -> Any:
        if isinstance(value, TaskStatus):
            return str(value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str):
            return redact(value)
        return value

    return {k: clean(v) for k, v in data.items()}


__all__ = ["CommandFailed", "build_request", "report_exit"]
