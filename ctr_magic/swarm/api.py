"""The Swarm endpoints of the Engine API (swarm, nodes, services, tasks), plain dicts out.

Built on the Docker backend's :class:`~ctr_magic.docker.api.EngineAPI` (its transport, version
negotiation and error mapping); only the paths and bodies are Swarm's.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any, Optional
from urllib.parse import quote

from ..docker.api import EngineAPI
from ..docker.frames import ChunkReader, iter_frames

log = logging.getLogger(__name__)

JSON = dict[str, Any]
_NANOS = 1_000_000_000


def _filters(filters: Optional[dict[str, list[str]]]) -> dict[str, str]:
    return {"filters": json.dumps(filters)} if filters else {}


class SwarmAPI:
    """Swarm endpoints of one engine (a manager for services, nodes and tasks)."""

    def __init__(self, engine: EngineAPI) -> None:
        self.engine = engine

    @classmethod
    def connect(cls, socket_path: str, *, timeout: Optional[float] = 60.0) -> SwarmAPI:
        return cls(EngineAPI(socket_path, timeout=timeout, daemon="the Swarm manager"))

    @property
    def socket_path(self) -> str:
        return self.engine.socket_path

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.engine.transport.request(method, f"/v{self.engine.api_version}{path}", **kwargs)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> SwarmAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- swarm ----------------------------------------------------------------------------------
    def swarm_init(self, listen_addr: str, *, heartbeat_seconds: int = 5) -> str:
        body = {"ListenAddr": listen_addr, "AdvertiseAddr": listen_addr,
                "Spec": {"Dispatcher": {"HeartbeatPeriod": heartbeat_seconds * _NANOS},
                         "Orchestration": {"TaskHistoryRetentionLimit": 5}}}
        return str(self._call("POST", "/swarm/init", body=body, what="initialising the swarm").json())

    def swarm_join(self, listen_addr: str, managers: list[str], token: str) -> None:
        body = {"ListenAddr": listen_addr, "AdvertiseAddr": listen_addr, "RemoteAddrs": managers,
                "JoinToken": token}
        self._call("POST", "/swarm/join", body=body, what=f"joining the swarm at {managers[0]}", timeout=120.0)

    def swarm_inspect(self) -> JSON:
        return self._call("GET", "/swarm", what="inspecting the swarm", kind="swarm").json()

    def info(self) -> JSON:
        return self._call("GET", "/info", what="asking the engine for its info").json()

    # -- nodes ----------------------------------------------------------------------------------
    def nodes(self, *, filters: Optional[dict[str, list[str]]] = None) -> list[JSON]:
        return self._call("GET", "/nodes", params=_filters(filters), what="listing the swarm's nodes").json()

    def node_inspect(self, node: str) -> JSON:
        return self._call("GET", f"/nodes/{quote(node)}", what=f"inspecting node {node}", kind="node").json()

    def node_update(self, node_id: str, version: int, spec: JSON) -> None:
        self._call("POST", f"/nodes/{node_id}/update", params={"version": str(version)}, body=spec,
                   what=f"updating node {node_id[:12]}", kind="node")

    def node_label(self, node_id: str, labels: dict[str, str]) -> None:
        """Add *labels* to a node's spec (read, merge, write with the version just read)."""
        data = self.node_inspect(node_id)
        spec = dict(data.get("Spec") or {})
        spec["Labels"] = {**(spec.get("Labels") or {}), **labels}
        self.node_update(node_id, int(data["Version"]["Index"]), spec)

    # -- services -------------------------------------------------------------------------------
    def service_create(self, spec: JSON) -> JSON:
        name = spec.get("Name", "")
        return self._call("POST", "/services/create", body=spec, what=f"creating service {name}",
                          kind="service").json()

    def services(self, *, filters: Optional[dict[str, list[str]]] = None, status: bool = False) -> list[JSON]:
        params = _filters(filters)
        if status and self.engine.api_at_least("1.41"):
            params["status"] = "true"
        return self._call("GET", "/services", params=params, what="listing services").json()

    def service_inspect(self, service: str) -> JSON:
        return self._call("GET", f"/services/{quote(service)}", what=f"inspecting service {service}",
                          kind="service").json()

    def service_update(self, service_id: str, version: int, spec: JSON, *, rollback: bool = False) -> JSON:
        params = {"version": str(version)}
        if rollback:
            params["rollback"] = "previous"
        resp = self._call("POST", f"/services/{service_id}/update", params=params, body=spec,
                          what=f"updating service {spec.get('Name', service_id)}", kind="service")
        return resp.json() if resp.content else {}

    def service_remove(self, service: str) -> None:
        self._call("DELETE", f"/services/{quote(service)}", what=f"removing service {service}", kind="service")

    def service_logs(
        self,
        service: str,
        *,
        follow: bool = False,
        details: bool = True,
        tail: str = "all",
        timeout: Optional[float] = None,
    ) -> Iterator[tuple[int, bytes]]:
        """``(stream, data)`` frames of every task's log (with *details*: the task/node attributes)."""
        params = {"stdout": "1", "stderr": "1", "follow": "1" if follow else "0", "details": "1" if details else "0",
                  "tail": tail}
        path = f"/v{self.engine.api_version}/services/{quote(service)}/logs"
        with contextlib.ExitStack() as stack:
            resp = stack.enter_context(self.engine.transport.stream(
                "GET", path, params=params, timeout=timeout, what=f"reading the logs of service {service}",
                kind="service"))
            yield from iter_frames(ChunkReader(resp.iter_raw()).recv, multiplexed=True)

    # -- tasks ----------------------------------------------------------------------------------
    def tasks(self, *, filters: Optional[dict[str, list[str]]] = None) -> list[JSON]:
        return self._call("GET", "/tasks", params=_filters(filters), what="listing tasks").json()

    def task_inspect(self, task_id: str) -> JSON:
        return self._call("GET", f"/tasks/{quote(task_id)}", what=f"inspecting task {task_id}", kind="task").json()

    # -- images ---------------------------------------------------------------------------------
    def distribution_inspect(self, ref: str) -> JSON:
        """What the registry serves for *ref* (``Descriptor.digest``), asked by the manager."""
        return self._call("GET", f"/distribution/{ref}/json", what=f"resolving {ref} in its registry",
                          kind="pull").json()


__all__ = ["SwarmAPI"]
