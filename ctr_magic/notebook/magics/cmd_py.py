"""``%%ctr py TARGET`` / ``x = %ctr py TARGET -- expr``: this cell's Python, run by the container's python3.

The transport and the agent live in :mod:`ctr_magic.pycell`; this module only turns the magic's
words into a target container, inputs and outputs, and shows what comes back.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
from typing import Any, Optional

from ...errors import CtrError, FailedPrecondition, InvalidArgument, NotFound
from ...types import ContainerSpec, CreateContainerRequest, DeleteContainerOptions, DeleteTaskOptions, TaskStatus
from . import imageref, parsing
from .context import Context
from .failure import RED, RESET
from .limitopts import EXIT_KILLED, limit_options, limits_from, oom_reason
from .parsing import CELL_OPTIONAL, argument, command
from .streams import TextSink

HELP_ORDER = 45  # place of these commands in the %ctr --help overview
FORMATS = ("pickle", "arrow", "json")
#: The main process of a container started for Python cells: python itself, idle, reaping orphans
#: (what an interrupted cell left), stopping on SIGTERM.
KEEPALIVE = """import os, signal, sys
def reap(*_):
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
signal.signal(signal.SIGCHLD, reap)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    signal.pause()
"""


def _names(text: str, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if not name.isidentifier():
            raise InvalidArgument(f"{option} {name!r} is not a Python variable name", hint=f"e.g. {option} a,b,df")
    return names


def _code(ctx: Context, args: Any) -> tuple[str, str]:
    """(source, mode): the cell body (exec) or the expression after ``--`` (eval)."""
    expression = ""
    if args.expr:
        marker = " -- "
        raw = ctx.line.split(marker, 1)[1] if marker in ctx.line else ""
        expression = (raw or " ".join(a for a in args.expr if a != "--")).strip()
    if ctx.cell is not None and expression:
        raise InvalidArgument("both a cell body and an expression after --", hint="use one of them")
    if ctx.cell is not None:
        return ctx.cell, "exec"
    if not expression:
        raise InvalidArgument("no code to run", hint="%%ctr py BOX with a cell body, or x = %ctr py BOX -- EXPRESSION")
    return expression, "eval"


def _existing(ctx: Context, target: str) -> Optional[Any]:
    try:
        return ctx.service.get_container(target)
    except (NotFound, InvalidArgument):
        return None


def _require_running(ctx: Context, container_id: str) -> None:
    try:
        status = ctx.service.get_task_info(container_id).status
    except NotFound:
        status = TaskStatus.UNKNOWN
    if status != TaskStatus.RUNNING:
        raise FailedPrecondition(f"container {container_id} is not running", hint=f"%ctr start {container_id}")


def _start_from_image(ctx: Context, image: str, name: str, args: Any) -> None:
    from ...pycell import NoPython

    ref = imageref.ensure(ctx, image)
    spec = ContainerSpec(cmd=[args.python, "-c", KEEPALIVE], limits=limits_from(args))
    ctx.service.create_container(CreateContainerRequest(id=name, image_ref=ref, spec=spec))
    try:
        ctx.service.start_container(name)
    except BaseException as exc:
        _discard(ctx, name)
        said = str(exc).lower()
        if isinstance(exc, CtrError) and args.python in str(exc) and ("not found" in said or "no such file" in said):
            raise NoPython(f"image {image} has no {args.python}",
                           hint="use an image with Python 3.7 or newer, e.g. ctr_magic.debian_image") from None
        raise


def _target(ctx: Context, args: Any) -> tuple[str, bool]:
    """(container id, whether it is this cell's own and goes afterwards)."""
    limits = limits_from(args)
    if _existing(ctx, args.target) is not None:
        if args.keep:
            raise InvalidArgument(f"--keep {args.keep}: {args.target} is a container already",
                                  hint="--keep names the container started from an image")
        if not limits.is_empty():
            raise InvalidArgument(f"limits apply to a container started from an image; {args.target} exists",
                                  hint=f"%ctr update {args.target} --memory ... changes a running one")
        _require_running(ctx, args.target)
        return args.target, False
    if args.keep and _existing(ctx, args.keep) is not None:
        _require_running(ctx, args.keep)
        return args.keep, False
    name = args.keep or f"py-{secrets.token_hex(4)}"
    _start_from_image(ctx, args.target, name, args)
    if args.keep:
        ctx.say(f"started {name} from {args.target}; it keeps its Python state (`%ctr rm -f {name}` ends it)")
    return name, not args.keep


@command("py", help="run this cell's Python in a container; variables in (--in) and out (--out)",
         cell=CELL_OPTIONAL, completes="container")
@argument("--in", dest="inputs", default="", metavar="A,B", help="kernel variables to send into the container")
@argument("--out", dest="outputs", default="", metavar="X,Y", help="names to bring back into the kernel")
@argument("--format", choices=FORMATS, default="pickle",
          help="pickle (default; DataFrames as Arrow when both sides have pyarrow), or arrow / json, which "
               "never unpickle what comes back")
@argument("--keep", default="", metavar="NAME",
          help="with an image: start the container as NAME and keep it (and its Python state) for later cells")
@argument("--fresh", action="store_true", help="start a new Python in the container (its state is dropped)")
@argument("--python", default="python3", help="the interpreter in the container (default python3)")
@limit_options
@argument("target", help="a running container, or an image (a container is started for the cell)")
@argument("expr", nargs=argparse.REMAINDER, help="line form: an expression after --, its value is returned")
def py(ctx: Context, args: Any) -> Any:
    """Run the cell's Python in TARGET with the container's own python3, like a second kernel.

    `--in a,df` sends kernel variables in, `--out result,fig` brings names back into the kernel.
    Output streams live (stderr in red); an exception in the container fails the cell with its
    last line (--debug: the whole remote traceback); the stop button raises KeyboardInterrupt in
    the remote code. A container keeps its Python state between cells. Unpickling what a container
    sends runs code in the kernel: --format arrow or json never unpickle.
    """
    from ...pycell import AgentGone, RemoteError

    args = _options_after_target(ctx, args)
    inputs = {name: _lookup(ctx, name) for name in _names(args.inputs, "--in")}
    outputs = _names(args.outputs, "--out")
    code, mode = _code(ctx, args)
    agents = ctx.session.agents()
    if not args.keep and not args.fresh and agents.live(args.target, ctx.service):
        container_id, temporary = args.target, False  # a live agent means a running container: no lookups
    else:
        container_id, temporary = _target(ctx, args)
    out, err = TextSink("stdout"), TextSink("stderr")
    try:
        if args.fresh:
            agents.drop(container_id)
        agent, replaced = agents.get(ctx.service, container_id, python=args.python)
        if replaced:
            ctx.warn(f"%ctr py: the earlier Python in {container_id} had ended; this one starts empty")
        values = agent.run(code, inputs=inputs, outputs=outputs, fmt=args.format, mode=mode, stdout=out,
                           stderr=err)
    except RemoteError as exc:
        if getattr(args, "debug", False) or ctx.magic.debug:
            sys.stderr.write(f"{RED}remote traceback (in {container_id}):{RESET}\n{exc.remote_traceback}")
        raise
    except AgentGone as exc:
        agents.drop(container_id)
        reason = oom_reason(ctx, container_id, exc.exit_code or 0)
        if reason:
            raise AgentGone(f"{args.python} in {container_id} {reason}, exit code {EXIT_KILLED}",
                            exit_code=exc.exit_code) from None
        raise
    finally:
        out.close()
        err.close()
        if temporary:
            agents.drop(container_id)
            _discard(ctx, container_id)
    for name in outputs:
        ctx.store(name, values[name])
    return values.get("") if mode == "eval" else None


def _options_after_target(ctx: Context, args: Any) -> Any:
    """``%%ctr py BOX --in df`` works as ``%%ctr py --in df BOX``: options after TARGET are parsed again."""
    rest = list(args.expr)
    if not rest or not rest[0].startswith("-") or rest[0] == "--":
        return args
    words = parsing.split_line(ctx.line)
    before = words[1:len(words) - len(rest) - 1]  # what came before TARGET (REMAINDER took the tail)
    cut = rest.index("--") if "--" in rest else len(rest)
    return parsing.parse(["py", *before, *rest[:cut], args.target, *rest[cut:]]).args


def _discard(ctx: Context, container_id: str) -> None:
    """Remove the container this cell started (its task first), ignoring what is gone already."""
    with contextlib.suppress(NotFound):
        ctx.service.delete_task(container_id, DeleteTaskOptions(force=True))
    with contextlib.suppress(NotFound):
        ctx.service.delete_container(container_id, DeleteContainerOptions(cleanup_snapshot=True, force=True))


def _lookup(ctx: Context, name: str) -> Any:
    try:
        return ctx.lookup(name)
    except InvalidArgument:
        raise InvalidArgument(f"--in {name}: no Python variable named {name!r} in the kernel",
                              hint="define it first, or check the spelling") from None
