"""The last lines of a daemon's log file, folded into one line for an error message."""

from __future__ import annotations

import os

_WINDOW = 16384  # bytes read from the end: enough for the last few lines of any daemon's log


def log_tail(path: str | os.PathLike[str], lines: int = 15, *, missing: str = "(no log)") -> str:
    """The last *lines* lines of *path* joined with `` | ``; *missing* when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _WINDOW))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return missing
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


__all__ = ["log_tail"]
