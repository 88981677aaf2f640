"""Write a file so that a reader sees the old content or the new one, never half of it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any, Optional


@contextlib.contextmanager
def atomic_output(path: str, *, binary: bool = False, mode: Optional[int] = None) -> Iterator[IO[Any]]:
    """Yield a temporary file beside *path*; on a clean exit, rename it over *path*.

    The directory must exist. *mode* sets the file's permissions (default: the temporary file's
    0600). On any failure (or Ctrl-C) the temporary file is removed and *path* is left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}-", suffix=".partial")
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            yield fh
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str, text: str, *, mode: int = 0o644) -> None:
    """Write *text* to *path* through :func:`atomic_output`."""
    with atomic_output(path, mode=mode) as fh:
        fh.write(text)


__all__ = ["atomic_output", "write_text_atomic"]
