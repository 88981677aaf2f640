"""Resource limits in the magics: the options ``run``/``create``/``py`` share, and OOM reports.

Command modules import these from here (``%ctr update`` lives in cmd_limits)."""

from __future__ import annotations

import contextlib
from typing import Any

from ... import features
from ...errors import CtrError
from ...limits import ResourceLimits, oom_message, parse_cpus, parse_size, parse_swap, parse_ulimit
from .context import Context
from .parsing import argument

EXIT_KILLED = 137  # 128 + SIGKILL, what an OOM-killed process exits with


def _size(what: str) -> Any:
    def parse(text: str) -> int:
        return parse_size(text, what)

    parse.__name__ = "size"
    return parse


def limit_options(func: Any, *, update: bool = False) -> Any:
    """``--memory --memory-swap --cpus --cpu-shares --pids-limit`` (+ ``--shm-size --ulimit --read-only``)."""
    decorators = [
        argument("--memory", type=_size("--memory"), default=0, metavar="SIZE",
                 help="memory limit, e.g. 512m or 1g (the OOM killer ends what goes past it)"),
        argument("--memory-swap", type=parse_swap, default=0, metavar="SIZE",
                 help="memory + swap limit (-1: unlimited swap; default twice --memory)"),
        argument("--cpus", type=parse_cpus, default=0.0, help="CPUs' worth of time, e.g. 0.5 or 1.5"),
        argument("--cpu-shares", type=int, default=0, metavar="N", help="relative CPU weight (default 1024)"),
        argument("--pids-limit", type=int, default=0, metavar="N", help="most processes at once"),
    ]
    if not update:
        decorators += [
            argument("--shm-size", type=_size("--shm-size"), default=0, metavar="SIZE", help="size of /dev/shm"),
            argument("--ulimit", action="append", type=parse_ulimit, default=[], metavar="NAME=SOFT[:HARD]",
                     help="an rlimit, e.g. nofile=1024:2048"),
            argument("--read-only", action="store_true", help="mount the root filesystem read-only"),
        ]
    for decorate in reversed(decorators):
        func = decorate(func)
    return func


def limits_from(args: Any) -> ResourceLimits:
    return ResourceLimits(
        memory=args.memory, memory_swap=args.memory_swap, cpus=args.cpus, cpu_shares=args.cpu_shares,
        pids_limit=args.pids_limit, shm_size=getattr(args, "shm_size", 0), ulimits=list(getattr(args, "ulimit", [])),
        read_only=getattr(args, "read_only", False),
    ).check()


def oom_reason(ctx: Context, container_id: str, code: int) -> str:
    """"killed: out of memory (limit 64 MiB)" when exit *code* 137 was the OOM killer's doing, else ""."""
    if code != EXIT_KILLED or not features.supports(ctx.service, features.OomReports):
        return ""
    service: Any = ctx.service
    with contextlib.suppress(CtrError):
        if service.oom_killed(container_id):
            return oom_message(service.memory_limit(container_id))
    return ""


def update_limit_options(func: Any) -> Any:
    return limit_options(func, update=True)
