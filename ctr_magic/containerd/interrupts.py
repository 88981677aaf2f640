"""Holding Ctrl-C back while the calling thread is inside gRPC's own locking.

KeyboardInterrupt is raised between any two bytecodes of the main thread. Raised inside gRPC's
Python code while it holds one of its locks (creating, finishing or cancelling a call), it can leave
that lock held: the channel's event thread then waits for it forever and every later call on the
channel hangs (the fault trials of issue 14 caught exactly that). The short stretches spent in
gRPC therefore run with SIGINT deferred; the long waits happen outside them, where Ctrl-C lands at
once (see ``client.wait_settled``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Run the block with SIGINT noted instead of raised; raise it (as the old handler would) after.

    Only the main thread receives Python signals, so elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[Any] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(frame))
    except ValueError:  # no signals in this interpreter (a sub-interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            if callable(previous):
                previous(signal.SIGINT, pending[0])
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt
