"""The ``%ctr`` / ``%%ctr`` magics. ``%load_ext ctr_magic`` calls :func:`load_ipython_extension`.

Loading is kept cheap: pandas, ipywidgets and the backends are imported on first use.
"""

from __future__ import annotations

from typing import Any

from .core import CtrMagic

_COMPLETER_KEYS = ("%ctr", "%%ctr", "ctr")


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics, their settings (``%config CtrMagic``) and tab completion."""
    from .completion import complete

    if any(isinstance(c, CtrMagic) for c in ipython.configurables):
        return  # loaded already: keep the session
    magic = CtrMagic(ipython)
    ipython.register_magics(magic)
    for key in _COMPLETER_KEYS:
        ipython.set_hook("complete_command", complete, str_key=key)


def unload_ipython_extension(ipython: Any) -> None:
    """Unmount what the session mounted, close its connection and drop the magics."""
    from .completion import complete

    for magic in [c for c in ipython.configurables if isinstance(c, CtrMagic)]:
        magic.close()
        ipython.configurables.remove(magic)
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("ctr", None)
    dispatcher = ipython.strdispatchers.get("complete_command")
    if dispatcher is not None:
        for key in _COMPLETER_KEYS:
            chain = dispatcher.strs.get(key)
            if chain is not None:
                chain.chain = [(p, f) for p, f in chain.chain if getattr(f, "__func__", f) is not complete]
                if not chain.chain:
                    dispatcher.strs.pop(key, None)


__all__ = ["CtrMagic", "load_ipython_extension", "unload_ipython_extension"]
