"""Small conversions between protobuf and Python values."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional


def to_datetime(message: Any, field: str) -> Optional[datetime]:
    """A tz-aware UTC datetime from a Timestamp field, or None when unset."""
    if not message.HasField(field):
        return None
    ts = getattr(message, field)
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=timezone.utc)
