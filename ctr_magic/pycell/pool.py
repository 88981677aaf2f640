"""The agents of one notebook session: one per container, kept while they live."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from .client import PythonAgent

log = logging.getLogger(__name__)


class AgentPool:
    """Container id -> its :class:`PythonAgent`; a dead agent is replaced on next use."""

    def __init__(self) -> None:
        self._agents: dict[str, PythonAgent] = {}

    def get(self, service: Any, container_id: str, *, python: str = "python3") -> tuple[PythonAgent, bool]:
        """The live agent of *container_id* (started when needed); the flag says an earlier one had ended."""
        agent = self._agents.get(container_id)
        replaced = False
        if agent is not None and (not agent.alive or agent.service is not service or agent.python != python):
            replaced = not agent.alive
            self.drop(container_id)
            agent = None
        if agent is None:
            agent = PythonAgent(service, container_id, python=python)
            self._agents[container_id] = agent
        return agent, replaced

    def live(self, container_id: str, service: Any) -> bool:
        """True when *container_id* has a running agent on *service* (so the container runs too)."""
        agent = self._agents.get(container_id)
        return agent is not None and agent.alive and agent.service is service

    def drop(self, container_id: str) -> None:
        agent = self._agents.pop(container_id, None)
        if agent is not None:
            with contextlib.suppress(Exception):
                agent.close()

    def close(self) -> None:
        for container_id in list(self._agents):
            self.drop(container_id)

    def __contains__(self, container_id: str) -> bool:
        return container_id in self._agents
