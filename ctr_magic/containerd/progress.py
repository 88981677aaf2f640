"""Per-blob progress events, delivered on the caller's thread and throttled.

Workers :meth:`ProgressReporter.post` events from any thread; the thread that started the operation
calls :meth:`ProgressReporter.pump` to hand them to the user's callback, so an exception raised by the
callback (KeyboardInterrupt included) surfaces where it can be handled. Byte counts are throttled to
``max_rate`` events per second per blob; every change of state is delivered.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Optional

from ..types import LayerProgress

WAITING = "waiting"
DOWNLOADING = "downloading"
UPLOADING = "uploading"
EXISTS = "exists"
DONE = "done"
UNPACKING = "unpacking"
UNPACKED = "unpacked"
ERROR = "error"

Callback = Callable[[LayerProgress], None]


class ProgressReporter:
    def __init__(self, ref: str, callback: Optional[Callback], *, max_rate: float = 10.0) -> None:
        self.ref = ref
        self.callback = callback
        self.min_interval = 1.0 / max_rate if max_rate > 0 else 0.0
        self._queue: queue.SimpleQueue[Optional[LayerProgress]] = queue.SimpleQueue()
        self._last: dict[str, tuple[str, float, int]] = {}  # digest -> (state, time, done)

    @property
    def enabled(self) -> bool:
        return self.callback is not None

    def post(self, digest: str, media_type: str, state: str, done: int = 0, total: int = 0) -> None:
        """Queue an event (any thread)."""
        if self.callback is not None:
            self._queue.put(LayerProgress(self.ref, digest, media_type, done, total, state))

    def wake(self) -> None:
        """Make a waiting :meth:`pump` return (any thread), e.g. when a worker finishes."""
        self._queue.put(None)

    def pump(self, timeout: float = 0.0) -> None:
        """Deliver queued events to the callback on this thread; waits up to *timeout* for the first."""
        block = timeout > 0
        while True:
            try:
                event = self._queue.get(block=block, timeout=timeout if block else None)
            except queue.Empty:
                return
            block = False
            if event is not None and self.callback is not None:
                self._deliver(event)

    def _deliver(self, event: LayerProgress) -> None:
        now = time.monotonic()
        last = self._last.get(event.digest)
        if last is not None:
            state, when, done = last
            if (state == event.state and (now - when < self.min_interval or done == event.done)
                    and (event.done != event.total or done == event.done)):
                return  # throttled; a completed count is always shown
        self._last[event.digest] = (event.state, now, event.done)
        assert self.callback is not None
        self.callback(event)
