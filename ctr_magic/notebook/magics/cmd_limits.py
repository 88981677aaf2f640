"""``%ctr update``: new memory / CPU / pids limits for a running container."""

from __future__ import annotations

from typing import Any

from ... import features
from .context import Context
from .limitopts import limits_from, update_limit_options
from .parsing import argument, command

HELP_ORDER = 35  # place of these commands in the %ctr --help overview


@command("update", help="change the memory / CPU / pids limits of a running container", completes="container")
@argument("id", help="container id")
@update_limit_options
def update(ctx: Context, args: Any) -> None:
    """New limits for a running container (containerd: Tasks.Update, kept for its next start; Docker: update)."""
    limits = limits_from(args)
    service = features.require(ctx.service, features.ResourceUpdates, "%ctr update")
    service.update_container(args.id, limits)
    ctx.say(f"updated {args.id}")

