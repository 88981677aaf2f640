"""Closing widgets completely: a widget's Layout and Style are widgets (comms) of their own."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def close_widgets(widgets: Iterable[Any]) -> None:
    """Close each widget with its layout and style (ipywidgets' ``close()`` leaves those open)."""
    for widget in widgets:
        for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
            if part is not None and hasattr(part, "close"):
                part.close()
        widget.close()


__all__ = ["close_widgets"]
