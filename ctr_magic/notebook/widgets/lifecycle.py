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




class Displays:
    """Where a view was displayed, so that closing it can leave its static rendering in those places.

    A closed widget shows nothing (and a saved notebook keeps no state for it): the view's outputs
    are updated in place with the HTML/text rendering, which JupyterLab shows at once and
    nbconvert exports.
    """

    def __init__(self) -> None:
        self.ids: list[str] = []

    def show(self, bundle: dict[str, Any]) -> None:
        import secrets

        from IPython.display import display

        display_id = f"ctr-view-{secrets.token_hex(8)}"
        display(bundle, raw=True, display_id=display_id)
        self.ids.append(display_id)

    def update(self, bundle: dict[str, Any]) -> None:
        from IPython.display import update_display

        for display_id in self.ids:
            update_display(bundle, raw=True, display_id=display_id)


__all__ = ["Displays", "close_widgets"]
