"""When and how long to wait before trying a registry request again."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Optional

import httpx

from .. import errors

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    ``attempts`` counts every try, the first included. Delays grow as ``base * 2**n`` up to ``cap``;
    a ``Retry-After`` header (seconds or an HTTP date) is honoured up to ``cap``.
    """

    attempts: int = 4
    base: float = 0.25
    cap: float = 4.0
    jitter: bool = True

    def retryable_status(self, status: int) -> bool:
        return status in RETRY_STATUSES

    def retryable_error(self, exc: BaseException) -> bool:
        """Transport failures worth another try (refused, reset, timed out, cut short)."""
        return isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.UnsupportedProtocol)

    def delay(self, attempt: int, retry_after: Optional[str] = None, *, rng: Optional[random.Random] = None) -> float:
        """Seconds to wait after failed try number *attempt* (1-based)."""
        hinted = parse_retry_after(retry_after)
        if hinted is not None:
            return min(hinted, self.cap)
        ceiling = min(self.cap, self.base * (2 ** (attempt - 1)))
        if not self.jitter:
            return ceiling
        return (rng or random).uniform(ceiling / 2, ceiling)

    def sleep(self, seconds: float, cancel: Optional[threading.Event] = None) -> None:
        """Wait, waking early (with :class:`Interrupted`) when *cancel* is set."""
        event = cancel or threading.Event()
        if event.wait(seconds):
            raise errors.Interrupted("cancelled while waiting to retry a registry request")


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
