"""Widget views over a Service: the live dashboard, the exec console and the live stats chart.

Every view is built from stock ipywidgets 8 controls (nothing to build in the front end), has a
static HTML/text rendering for nbconvert and terminal IPython, and a ``close()`` that ends its
subscriptions and threads. ipywidgets is imported when a view is created, not before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .console import Console
    from .dashboard import Dashboard
    from .stats_chart import StatsChart

_LAZY = {"Dashboard": ".dashboard", "Console": ".console", "StatsChart": ".stats_chart"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module, __name__), name)


__all__ = ["Console", "Dashboard", "StatsChart"]
