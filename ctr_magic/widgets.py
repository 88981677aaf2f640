"""``ctr_magic.widgets``: the widgets of :mod:`ctr_magic.notebook.widgets` under their short, public path.

``from ctr_magic.widgets import Dashboard`` and ``ctr_magic.widgets.Dashboard(service)`` work as in
the notebook layer; nothing is imported beyond what the names need.
"""

from __future__ import annotations

from typing import Any

from .notebook import widgets as _widgets


def __getattr__(name: str) -> Any:
    return getattr(_widgets, name)


__all__ = list(_widgets.__all__)
