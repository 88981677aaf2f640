"""Widget views: ``%ctr dashboard``, ``%ctr console ID``, ``%ctr stats [ID…] [--watch]``.

In a Jupyter kernel they are live widgets (closed with the session or the kernel); in a terminal
IPython the dashboard and stats print once as text.
"""

from __future__ import annotations

from typing import Any

from ... import features
from ...errors import InvalidArgument
from . import argtypes
from .context import Context
from .parsing import argument, command

HELP_ORDER = 70  # place of these commands in the %ctr --help overview


def _in_kernel(ctx: Context) -> bool:
    from ..widgets import in_kernel

    return in_kernel(ctx.shell)


@command("dashboard", help="a live table of containers with start/stop/kill/remove/logs/console buttons")
@argument("--label", default="", metavar="KEY[=VALUE]", help="show only containers with this label")
@argument("--status", default="", choices=["", "running", "created", "paused", "stopped"],
          help="show only containers in this state")
@argument("--stats-interval", type=argtypes.parse_duration, default=2.0, metavar="SECONDS",
          help="how often CPU and memory are sampled (0: never)")
def dashboard(ctx: Context, args: Any) -> Any:
    """One row per container (id, image, status, pid, uptime, IP, CPU %, memory), updated from the
    backend's event stream. Buttons act on the row; remove asks first. `.close()` (or the end of
    the session) ends its subscription and threads.
    """
    from ..widgets.dashboard import Dashboard

    features.require(ctx.service, features.Events, "%ctr dashboard")
    live = _in_kernel(ctx)
    view = Dashboard(ctx.service, label=args.label, status=args.status,
                     stats_interval=args.stats_interval if live else 0.0, stop_timeout=ctx.magic.stop_timeout)
    if not live:
        view.close()  # a terminal cannot show a live view: print the table once
        return view
    ctx.session.views.append(view)
    return view


@command("console", help="an interactive shell in a running container (input line, live output)",
         completes="container")
@argument("id", help="container id")
@argument("--shell", default="sh", help="the program to run (default sh)")
def console(ctx: Context, args: Any) -> Any:
    """A console bound to a streaming exec of SHELL: type a command and press Enter; stderr shows
    in red, the exit code when the shell ends; "Ctrl-C" interrupts the running command.
    """
    from ..widgets.console import Console

    if not _in_kernel(ctx):
        raise InvalidArgument("%ctr console needs a notebook (a Jupyter kernel)",
                              hint=f"in a terminal use %ctr exec {args.id} -- CMD")
    ctx.service.get_container(args.id)
    view = Console(ctx.service, args.id, command=tuple(args.shell.split()))
    ctx.session.views.append(view)
    return view


@command("stats", help="CPU, memory, pids and I/O of running containers, as a DataFrame",
         completes="container")
@argument("ids", nargs="*", metavar="ID", help="containers (default: every running one)")
@argument("--watch", action="store_true", help="a live chart until the stop button (or --count samples)")
@argument("--interval", type=argtypes.parse_duration, default=1.0, metavar="SECONDS",
          help="seconds between samples (default 1; the CPU window without --watch is half of it)")
@argument("--count", type=int, default=0, metavar="N", help="with --watch: stop after N samples")
def stats(ctx: Context, args: Any) -> Any:
    """`df = %ctr stats` samples each container twice and returns CPU % (of one core), memory
    usage/limit/RSS, pids and block/network bytes (empty where the backend gives none).
    """
    from .. import stats as measuring

    features.require(ctx.service, features.Stats, "%ctr stats")
    for cid in args.ids:
        ctx.service.get_container(cid)
    if args.count < 0:
        raise InvalidArgument(f"--count {args.count}: give a positive number of samples")
    if not args.watch:
        return measuring.measure(ctx.service, args.ids, interval=max(args.interval / 2, 0.1))
    if not _in_kernel(ctx):
        return measuring.measure(ctx.service, args.ids, interval=max(args.interval / 2, 0.1))
    from IPython.display import display

    from ..widgets.stats_chart import StatsChart

    chart = StatsChart(ctx.service, tuple(args.ids), interval=args.interval)
    display(chart)
    return chart.run(args.count or None)
