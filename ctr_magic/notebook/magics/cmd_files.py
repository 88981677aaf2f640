"""``%ctr cp``: files and directories between the notebook's machine and a container, both ways."""

from __future__ import annotations

import os
import re
import time
from typing import Any, Optional

from ... import features
from ...errors import InvalidArgument
from ...types import LayerProgress
from .context import Context
from .parsing import argument, command

HELP_ORDER = 45  # place of these commands in the %ctr --help overview
#: Copies smaller than this show no progress bar (they are over before it would draw).
PROGRESS_FROM = 16 << 20
_CONTAINER_PATH = re.compile(r"(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]*):(?P<path>.*)\Z")


def split_target(text: str) -> tuple[str, str]:
    """``("box", "/data")`` for ``box:/data``; ``("", text)`` for a local path (``./x``, ``/x``, ``x``)."""
    match = _CONTAINER_PATH.match(text)
    if match is None or text.startswith(("./", "../", "/", "~")):
        return "", text
    return match.group("id"), match.group("path") or "/"


class _CopyProgress:
    """Bytes copied, shown as one bar in the session's progress display once the copy is large."""

    def __init__(self, ctx: Context, title: str, state: str) -> None:
        self.ctx = ctx
        self.title = title
        self.state = state  # downloading (out of the container) or uploading (into it)
        self.display: Optional[Any] = None
        self.last = (0, 0)

    def __call__(self, done: int, total: int) -> None:
        self.last = (done, total)
        if self.display is None:
            if max(done, total) < PROGRESS_FROM or self.ctx.magic.progress == "none":
                return
            from ..widgets import progress_display

            self.display = progress_display(self.ctx.magic.progress, self.title, self.ctx.shell)
        self.display(LayerProgress(ref=self.title, digest="files", done=done, total=total, state=self.state))

    def finish(self, ok: bool) -> None:
        if self.display is not None:
            done, total = self.last
            if ok:
                self.display(LayerProgress(ref=self.title, digest="files", done=done, total=total or done,
                                           state="done"))
            self.display.finish(ok=ok)


@command("cp", help="copy files or directories between the notebook and a container (ID:PATH)",
         completes="container")
@argument("source", help="ID:PATH in a container, or a local path")
@argument("dest", help="a local path, or ID:PATH in a container")
def cp(ctx: Context, args: Any) -> None:
    """Copy a file or a whole directory, modes kept: `%ctr cp box:/data ./data` or `%ctr cp ./data box:/srv/`.

    An existing directory (or a path ending in /) receives the copy under its own name; any other
    path is the copy's new name. Local paths are relative to the notebook's directory.
    """
    src_id, src_path = split_target(args.source)
    dst_id, dst_path = split_target(args.dest)
    if bool(src_id) == bool(dst_id):
        raise InvalidArgument("%ctr cp copies between the notebook and a container: name the container on one side",
                              hint="e.g. %ctr cp box:/etc/hostname ./hostname")
    copier = features.require(ctx.service, features.Copying, "%ctr cp")
    progress = _CopyProgress(ctx, f"cp {args.source} {args.dest}", "downloading" if src_id else "uploading")
    started = time.monotonic()
    try:
        if src_id:
            moved = copier.copy_from_container(src_id, src_path, dst_path, progress=progress)
        else:
            if not os.path.lexists(os.path.expanduser(src_path)):
                raise InvalidArgument(f"local path {src_path} does not exist")
            moved = copier.copy_to_container(dst_id, src_path, dst_path, progress=progress)
    except BaseException:
        progress.finish(ok=False)
        raise
    progress.finish(ok=True)
    from ..frames import human_size

    ctx.say(f"copied {args.source} to {args.dest} ({human_size(moved)}) in {time.monotonic() - started:.1f}s")


__all__ = ["split_target"]
