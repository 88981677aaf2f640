"""Write a file so that a reader sees the old content or the new one, never half of it."""

from __future__ import annotations

import os
import tempfile


def write_text_atomic(path: str, text: str, *, mode: int = 0o644) -> None:
    """Write *text* to a temporary file beside *path*, then rename it over *path*.

    The directory must exist. On any failure (or Ctrl-C) the temporary file is removed and
    *path* is left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}-", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


__all__ = ["write_text_atomic"]
