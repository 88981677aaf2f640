"""Driving a container started attached (``%ctr run`` in the foreground): stdin in, stdout/stderr into the cell."""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Optional

from .streams import TextSink, pump


def drive_attached(session: Any, stdin: Optional[bytes]) -> int:
    """Feed stdin, copy stdout/stderr into the cell as they come (stderr on the red stream); the exit code."""
    out, err = TextSink("stdout"), TextSink("stderr")
    feeder = None
    if stdin is not None and session.stdin is not None:
        feeder = threading.Thread(target=feed, args=(session.stdin, stdin), name="ctr-magic-run-stdin", daemon=True)
        feeder.start()
    try:
        pump({"stdout": session.stdout, "stderr": session.stderr}, {"stdout": out, "stderr": err})
    finally:
        out.close()
        err.close()
    if feeder is not None:
        feeder.join(5.0)
    return int(session.wait().exit_code)


def feed(writer: Any, data: bytes) -> None:
    """Write *data* to a session's stdin, then close it (the process's end of input)."""
    try:
        for start in range(0, len(data), 1 << 16):
            writer.write(data[start:start + (1 << 16)])
    except (OSError, ValueError):
        pass  # the process stopped reading: what it did not take is dropped, as in a shell
    finally:
        with contextlib.suppress(Exception):
            writer.close()


__all__ = ["drive_attached", "feed"]
