"""Driving a container started attached (``%ctr run`` in the foreground): stdin in, stdout/stderr into the cell."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any, Optional

from .streams import TextSink, pump


def drive_attached(session: Any, stdin: Optional[bytes], log_path: str = "") -> int:
    """Feed stdin, copy stdout/stderr into the cell as they come (stderr on the red stream); the exit code.

    With *log_path* the output is also appended there, so `%ctr logs` shows it afterwards (on
    containerd nobody else keeps a foreground container's output).
    """
    out, err = TextSink("stdout"), TextSink("stderr")
    feeder = None
    if stdin is not None and session.stdin is not None:
        feeder = threading.Thread(target=feed, args=(session.stdin, stdin), name="ctr-magic-run-stdin", daemon=True)
        feeder.start()
    with contextlib.ExitStack() as stack:
        sinks: dict[str, Callable[[bytes], None]] = {"stdout": out, "stderr": err}
        if log_path:
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
            log = stack.enter_context(open(log_path, "ab", buffering=0))
            sinks = {name: _tee(sink, log.write) for name, sink in sinks.items()}
        try:
            pump({"stdout": session.stdout, "stderr": session.stderr}, sinks)
        finally:
            out.close()
            err.close()
    if feeder is not None:
        feeder.join(5.0)
    return int(session.wait().exit_code)


def _tee(first: Callable[[bytes], Any], second: Callable[[bytes], Any]) -> Callable[[bytes], None]:
    def both(data: bytes) -> None:
        first(data)
        second(data)

    return both


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
