"""Widgets of the notebook layer: pull/push progress and the live views.

- ``progress``: per-layer pull/push bars (or one text line), collapsing to a summary line;
- ``dashboard``: the live container table; ``console``: an exec console; ``stats_chart``: the
  live stats chart. Each view is built from stock ipywidgets 8 controls (nothing to build in the
  front end), has a static HTML/text rendering for nbconvert and terminal IPython, and a
  ``close()`` that ends its subscriptions and threads.

ipywidgets is imported when a display or a view is created, not before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .progress import NullProgress, ProgressDisplay, TextProgress, WidgetProgress, in_kernel, progress_display

if TYPE_CHECKING:
    from .console import Console
    from .dashboard import Dashboard
    from .stats_chart import StatsChart

_VIEWS = {"Dashboard": ".dashboard", "Console": ".console", "StatsChart": ".stats_chart"}


def __getattr__(name: str) -> Any:
    module = _VIEWS.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module, __name__), name)


__all__ = ["Console", "Dashboard", "NullProgress", "ProgressDisplay", "StatsChart", "TextProgress", "WidgetProgress",
           "in_kernel", "progress_display"]
