"""``%%ctr build``: an image from the Dockerfile in the cell (or ``%ctr build -t NAME CONTEXT``).

Self-contained on purpose: it needs only the command registry, the context's service and its
output helpers, and asks the backend for the Build feature.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Optional

from ...errors import InvalidArgument
from .context import Context
from .parsing import CELL_OPTIONAL, argument, command
from .streams import TextSink

HELP_ORDER = 25  # place of these commands in the %ctr --help overview: after the image commands


def _build_args(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, has_value, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"--build-arg {item!r}: give KEY=VALUE", hint="e.g. --build-arg VERSION=1.2")
        out[key] = value if has_value else os.environ.get(key, "")
    return out


class BuildDisplay:
    """Step lines and RUN output in the cell: a step's header appears before its first output line,
    and every step ends with one line saying CACHED or how long it took."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.pending: Optional[str] = None
        self.sinks = {"stdout": TextSink("stdout"), "stderr": TextSink("stderr")}

    def on_step(self, event: Any) -> None:
        if event.status == "started":
            self.pending = f"step {event.number}/{event.total} {event.text}"
            return
        self.flush()
        self.pending = None
        if not self.quiet:
            sys.stdout.write(event.line() + "\n")
            sys.stdout.flush()

    def on_output(self, stream: str, data: bytes) -> None:
        if self.quiet:
            return
        if self.pending is not None:
            sys.stdout.write(self.pending + "\n")
            sys.stdout.flush()
            self.pending = None
        self.sinks[stream](data)

    def flush(self) -> None:
        for sink in self.sinks.values():
            sink.close()


@command("build", help="build an image from a Dockerfile (the cell, or CONTEXT/Dockerfile)", cell=CELL_OPTIONAL)
@argument("context", nargs="?", default="", help="build context directory (default: the notebook's directory)")
@argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]", help="name of the image (repeatable)")
@argument("-f", "--file", default="", help="the Dockerfile (line form only; default CONTEXT/Dockerfile)")
@argument("--build-arg", action="append", default=[], metavar="KEY=VALUE", help="value of an ARG (repeatable)")
@argument("--no-cache", action="store_true", help="run every step again instead of reusing cached layers")
@argument("--net", action="store_true", help="RUN steps get a network (the project's CNI bridge)")
@argument("--target", default="", help="build up to this stage (FROM ... AS NAME)")
@argument("--platform", default="", help="platform of the base images, e.g. linux/amd64")
@argument("-q", "--quiet", action="store_true", help="no step lines or RUN output; a failure shows its last lines")
@argument("--prune", action="store_true", help="drop the build cache (nothing is built)")
def build(ctx: Context, args: Any) -> None:
    """Build an image; each step shows CACHED or its time, and RUN output streams into the cell.

    `%%ctr build -t NAME` takes the cell as the Dockerfile; `%ctr build -t NAME CONTEXT [-f FILE]`
    reads CONTEXT/Dockerfile. The context honours `.dockerignore`. A failed step fails the cell
    in one line (`step 4/9 `RUN make` exited with code 2`); an interrupt stops the build; neither
    leaves a container, snapshot or lease behind.
    """
    from ...build import StepFailed
    from ...features import Build, require

    if args.prune:
        dropped = require(ctx.service, Build, "%ctr build --prune").prune_build_cache()
        ctx.say(f"dropped {dropped} build cache entr{'y' if dropped == 1 else 'ies'}")
        return
    if not args.tag:
        raise InvalidArgument("%ctr build needs a name: -t NAME[:TAG]", hint="e.g. %%ctr build -t localhost/app:1")
    dockerfile = ctx.cell or ""
    if dockerfile and args.file:
        raise InvalidArgument("%%ctr build takes the Dockerfile from the cell: drop -f, or use the line form")
    if ctx.cell is not None and not dockerfile.strip():
        raise InvalidArgument("the cell holds no Dockerfile", hint="write FROM IMAGE and the other instructions")
    context = os.path.abspath(args.context or os.getcwd())
    display = BuildDisplay(args.quiet)
    service = require(ctx.service, Build, "%ctr build")
    started = time.monotonic()
    try:
        result = service.build_image(dockerfile, context, tags=args.tag, file=args.file,
                                     build_args=_build_args(args.build_arg), no_cache=args.no_cache, net=args.net,
                                     target=args.target, platform=args.platform, on_step=display.on_step,
                                     on_output=display.on_output)
    except StepFailed as exc:
        display.flush()
        if args.quiet and exc.tail:
            sys.stderr.write("\n".join(exc.tail) + "\n")
            sys.stderr.flush()
        raise
    for warning in result.warnings:
        ctx.warn(f"%ctr build: {warning}")
    cached = f", {result.cached_steps}/{len(result.steps)} steps cached" if result.steps else ""
    ctx.say(f"built {', '.join(result.names)} {result.digest[:19]} in {time.monotonic() - started:.1f}s{cached}")
