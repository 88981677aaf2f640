"""``%ctr exec`` / ``%%ctr exec``: run a process in a container, output live in the cell."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from ...errors import Interrupted, InvalidArgument
from ...types import ExecTaskRequest
from . import argtypes
from .common import report_exit, shown, stdin_data, strip_dashes
from .context import Context
from .parsing import CELL_OPTIONAL, argument, command
from .streams import Collector, TextSink, pump

HELP_ORDER = 40  # place of these commands in the %ctr --help overview


@command("exec", help="run a command in a running container; output streams live", cell=CELL_OPTIONAL,
         completes="container")
@argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]",
          help="extra environment variable (a bare KEY takes the kernel's value)")
@argument("-w", "--workdir", default="", help="working directory")
@argument("-u", "--user", default="", help="user[:group] by name or id")
@argument("-o", "--output", default="", metavar="NAME", help="store stdout in the variable NAME (not shown)")
@argument("--binary", action="store_true", help="with -o: store bytes instead of text")
@argument("--stdin", default="", metavar="NAME", help="feed the variable NAME (str, bytes or a file) to stdin")
@argument("--check", action="store_true", help="fail the cell when the command exits non-zero")
@argument("id", help="container id")
@argument("cmd", nargs=argparse.REMAINDER, help="command and arguments (after an optional --)")
def exec_(ctx: Context, args: Any) -> None:
    """Run CMD in container ID. stdout and stderr stream into the cell as they are produced
    (stderr in red); the stop button kills the process. A non-zero exit prints one line,
    or fails the cell with --check. In `%%ctr exec ID -- CMD` the cell body is CMD's stdin.
    """
    cmd = strip_dashes(list(args.cmd))
    if not cmd:
        raise InvalidArgument("no command given", hint=f"e.g. %ctr exec {args.id} -- ls /")
    if args.binary and not args.output:
        raise InvalidArgument("--binary only applies to -o NAME")
    if args.output and not args.output.isidentifier():
        raise InvalidArgument(f"-o {args.output!r} is not a valid Python variable name")
    stdin = stdin_data(ctx, args)
    req = ExecTaskRequest(
        args=cmd,
        env=argtypes.parse_env(args.env),
        work_dir=args.workdir,
        user=args.user,
        stdin=stdin,
    )
    collector = Collector() if args.output else None
    code = run_streaming(ctx, args.id, req, stdout_sink=collector)
    if collector is not None:
        ctx.store(args.output, collector.value(args.binary))
    report_exit(ctx, f"`{shown(cmd)}` in {args.id}", code, args.check)


def run_streaming(ctx: Context, container_id: str, req: ExecTaskRequest, *, stdout_sink: Any = None) -> int:
    """Start the exec, pump its output into the cell, return its exit code; Ctrl-C kills it.

    ``req.stdin`` (bytes) is fed by the service; without it stdin is closed at once (EOF).
    """
    out_sink = stdout_sink if stdout_sink is not None else TextSink("stdout")
    err_sink = TextSink("stderr")
    session = ctx.service.exec_task_streaming(container_id, req)
    try:
        if req.stdin is None and session.stdin is not None:
            with contextlib.suppress(Exception):
                session.stdin.close()
        pump({"stdout": session.stdout, "stderr": session.stderr}, {"stdout": out_sink, "stderr": err_sink})
        result = session.wait()
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: killed `{shown(req.args)}` in {container_id}") from None
    finally:
        session.close()
        for sink in (out_sink, err_sink):
            close = getattr(sink, "close", None)
            if close is not None:
                close()
    return int(getattr(result, "exit_code", result))
