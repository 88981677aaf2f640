"""The state of one ``%ctr`` session: the connection, images used, mounts, the environment.

This is the only mutable state of the magics; it lives on the CtrMagic instance.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

log = logging.getLogger(__name__)


@dataclass
class ConnectionSettings:
    backend: str = ""
    socket: str = ""
    namespace: str = ""


@dataclass
class Session:
    """Holds the service connection and what the session made or used."""

    settings: Callable[[], ConnectionSettings]
    #: normalised image ref -> digest, for ``%ctr lock``.
    images_used: dict[str, str] = field(default_factory=dict)
    #: container id (or mount dir) -> MountedSnapshot, unmounted on close.
    mounts: dict[str, Any] = field(default_factory=dict)
    #: the private environment this session started (it stops only that one).
    environment: Any = None
    started_environment: bool = False
    #: live widget views (dashboards, consoles) this session opened, closed with it.
    views: list[Any] = field(default_factory=list)
    #: the Swarm test cluster this session started (`%ctr up --swarm N`), stopped by `%ctr down`.
    cluster: Any = None
    #: what tab completion listed recently: kind -> (monotonic time, names)
    completion_cache: dict[str, tuple[float, list[str]]] = field(default_factory=dict)
    #: the Python agents of ``%%ctr py`` (a ctr_magic.pycell.AgentPool, made on first use).
    python_agents: Any = None
    _service: Any = None
    _service_key: Optional[tuple[str, str, str]] = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- connection -----------------------------------------------------------------------------
    @property
    def service(self) -> Any:
        """The connected Service (connects lazily; reconnects when the settings changed)."""
        wanted = self.settings()
        key = (wanted.backend, wanted.socket, wanted.namespace)
        with self._lock:
            if self._service is None or self._service_key != key:
                self._close_service()
                from ...connect import connect

                self._service = connect(wanted.backend or None, wanted.socket or None, wanted.namespace or None)
                self._service_key = key
            return self._service

    @property
    def connected(self) -> bool:
        return self._service is not None

    def disconnect(self) -> None:
        with self._lock:
            self._close_service()

    def agents(self) -> Any:
        """The session's :class:`~ctr_magic.pycell.AgentPool` (one Python agent per container)."""
        if self.python_agents is None:
            from ...pycell.pool import AgentPool

            self.python_agents = AgentPool()
        return self.python_agents

    def _close_service(self) -> None:
        if self.python_agents is not None:
            self.python_agents.close()
        service, self._service, self._service_key = self._service, None, None
        close = getattr(service, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()

    # -- bookkeeping ----------------------------------------------------------------------------
    def record_image(self, ref: str, digest: str) -> None:
        if ref and digest:
            self.images_used[ref] = digest

    def close(self) -> None:
        """Unmount what the session mounted and drop the connection (extension unload, exit)."""
        for view in self.views:
            try:
                view.close()
            except Exception:
                log.warning("could not close %r", view, exc_info=True)
        self.views.clear()
        for key, mounted in list(self.mounts.items()):
            try:
                mounted.unmount()
            except Exception:
                log.warning("could not unmount %s", key, exc_info=True)
            self.mounts.pop(key, None)
        self.disconnect()
