"""Swarm nodes: what the manager says of them, and the engine endpoint of each.

The manager's API cannot exec into a container on another node, so exec, copy and stats go to
that node's own engine. Its endpoint comes from ``--node NAME=SOCKET`` (given by the user), else
from the node's ``ctr-magic.engine`` label (``ctr-magic up --swarm`` sets it), else there is none
and the call says so in one line.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

from .. import errors
from ..docker.convert import parse_time

log = logging.getLogger(__name__)

#: Node label holding the node's Engine API endpoint (``unix:///path`` or a socket path).
ENGINE_LABEL = "ctr-magic.engine"
NODE_OPTION = "--node NAME=SOCKET"


@dataclass(frozen=True)
class SwarmNode:
    """One node as the manager reports it."""

    id: str
    name: str
    role: str
    availability: str
    state: str
    address: str
    manager_status: str = ""
    cpus: float = 0.0
    memory: int = 0
    engine_version: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    engine_labels: dict[str, str] = field(default_factory=dict)
    created: Optional[datetime] = None


def node_from_json(data: dict[str, Any]) -> SwarmNode:
    spec = data.get("Spec") or {}
    desc = data.get("Description") or {}
    status = data.get("Status") or {}
    resources = desc.get("Resources") or {}
    engine = desc.get("Engine") or {}
    manager = data.get("ManagerStatus") or {}
    manager_status = ("leader" if manager.get("Leader") else str(manager.get("Reachability", ""))) if manager else ""
    return SwarmNode(
        id=str(data.get("ID", "")),
        name=str(desc.get("Hostname", "")),
        role=str(spec.get("Role", "")),
        availability=str(spec.get("Availability", "")),
        state=str(status.get("State", "")),
        address=str(status.get("Addr", "")),
        manager_status=manager_status,
        cpus=int(resources.get("NanoCPUs") or 0) / 1e9,
        memory=int(resources.get("MemoryBytes") or 0),
        engine_version=str(engine.get("EngineVersion", "")),
        labels=dict(spec.get("Labels") or {}),
        engine_labels=dict(engine.get("Labels") or {}),
        created=parse_time(data.get("CreatedAt")),
    )


def parse_node_option(text: str) -> tuple[str, str]:
    """``NAME=SOCKET`` or ``NAME=tcp://HOST:PORT`` -> (name, endpoint); one-line InvalidArgument otherwise."""
    name, sep, address = text.partition("=")
    if not sep or not name.strip() or not address.strip():
        raise errors.InvalidArgument(f"--node {text!r} is not NAME=SOCKET", hint="e.g. --node node2=/run/node2.sock")
    return name.strip(), engine_socket(address.strip(), name.strip())


def engine_socket(address: str, node: str) -> str:
    """An engine endpoint: a socket path (``unix://`` stripped) or ``tcp://HOST:PORT`` (plain HTTP)."""
    if address.startswith("unix://"):
        return address[len("unix://"):]
    if address.startswith("tcp://"):
        from ..docker.transport import tcp_address

        tcp_address(address)  # a malformed one fails here, in one line
        return address
    if "://" in address:
        raise errors.NotSupported(
            f"engine endpoint {address!r} of node {node}: only unix sockets and tcp:// are supported",
            hint="forward the node's engine to a local socket (ssh -L /tmp/node.sock:/var/run/docker.sock NODE)",
        )
    return address


class NodeEngines:
    """node name or id -> a DockerService on that node's engine (connected on first use)."""

    def __init__(self, endpoints: Optional[dict[str, str]] = None) -> None:
        self._given: dict[str, str] = {}
        self._services: dict[str, Any] = {}
        self._lock = threading.Lock()
        for name, address in (endpoints or {}).items():
            self.add(name, address)

    def add(self, name: str, address: str) -> None:
        socket = engine_socket(address, name)
        with self._lock:
            self._given[name] = socket
            old = self._services.pop(name, None)
        if old is not None:
            old.close()

    @property
    def given(self) -> dict[str, str]:
        return dict(self._given)

    def endpoint(self, node: SwarmNode) -> Optional[str]:
        for key in (node.name, node.id):
            if key in self._given:
                return self._given[key]
        label = node.labels.get(ENGINE_LABEL) or node.engine_labels.get(ENGINE_LABEL)
        return engine_socket(label, node.name) if label else None

    def service_for(self, node: SwarmNode, action: str) -> Any:
        """The DockerService of *node*, or NotSupported naming the node and the option."""
        socket = self.endpoint(node)
        if socket is None:
            raise errors.NotSupported(
                f"{action}: no engine endpoint known for node {node.name}",
                hint=f"give it with `%ctr use swarm {NODE_OPTION}` ({node.name}=...), or label the node "
                     f"{ENGINE_LABEL}=unix:///path/to/docker.sock",
            )
        from ..docker.api import EngineAPI
        from ..docker.service import DockerService

        with self._lock:
            svc = self._services.get(socket)
            if svc is None:
                engine = EngineAPI(socket, daemon=f"the engine of node {node.name}")
                svc = self._services[socket] = DockerService(engine)
            return svc

    def close(self) -> None:
        with self._lock:
            services, self._services = list(self._services.values()), {}
        for svc in services:
            svc.close()


__all__ = ["ENGINE_LABEL", "NodeEngines", "SwarmNode", "engine_socket", "node_from_json", "parse_node_option"]
