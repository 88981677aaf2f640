"""Image references in the session: lock-file resolution, recording for ``%ctr lock``, auto-pull."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import NotFound
from ...types import PullImageOptions
from ..lock import LockFile
from .context import Context


def lock_path(ctx: Context) -> Path:
    return Path(ctx.magic.lock_file).expanduser()


def resolve(ctx: Context, ref: str) -> str:
    """The ref to use: pinned to its locked digest when a lock file lists it (and says so)."""
    if not ctx.magic.use_lock:
        return ref
    lock = LockFile.load(lock_path(ctx))
    if lock is None:
        return ref
    resolved, digest = lock.resolve(ref)
    if digest:
        ctx.say(f"locked: {ref} -> {short_digest(digest)}… ({lock.path.name})")
    return resolved


def short_digest(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest


@contextlib.contextmanager
def progress(ctx: Context, title: str, *, quiet: bool = False) -> Iterator[Any]:
    """The session's progress display for a pull or push, finished as failed when the block raises."""
    from ..widgets import progress_display

    display = progress_display("none" if quiet else ctx.magic.progress, title, ctx.shell)
    try:
        yield display
    except BaseException:
        display.finish(ok=False)
        raise
    display.finish(ok=True)


def pull(ctx: Context, ref: str, *, typed: str = "", platform: str = "", unpack: bool = True,
         quiet: bool = False) -> Any:
    """Pull with a progress display; records ``typed -> digest`` for the lock; says what it got."""
    from ..frames import human_size

    with progress(ctx, f"pull {ref}", quiet=quiet) as display:
        started = time.monotonic()
        info = ctx.service.pull_image(ref, PullImageOptions(unpack=unpack, platform=platform, progress=display))
        describe = getattr(display, "describe", None)
        if describe is not None:  # the widget's summary line names what arrived
            describe(ref=info.name, digest=info.id, size=getattr(info, "size", 0))
    ctx.session.record_image(typed or ref, info.id)
    size = f", {human_size(info.size)}" if getattr(info, "size", 0) else ""
    ctx.say(f"pulled {info.name} {short_digest(info.id)}{size} in {time.monotonic() - started:.1f}s")
    return info


def ensure(ctx: Context, typed: str) -> str:
    """Resolve ``typed`` (lock), pull it when absent (with progress), record it; returns the ref to use."""
    ref = resolve(ctx, typed)
    try:
        info = ctx.service.get_image(ref)
    except NotFound:
        info = pull(ctx, ref, typed=typed)
    ctx.session.record_image(typed, info.id)
    return ref
