"""Services on a Swarm manager: create, list, tasks, scale, rolling update, remove, merged logs."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional
from urllib.parse import parse_qsl

from .. import errors
from ..docker.convert import parse_time
from ..env.processes import wait_until
from ..reference import parse_reference
from .api import SwarmAPI
from .nodes import SwarmNode, node_from_json
from .rollout import ProgressCallback, wait_converged
from .specs import REPLICAS_LABEL, ServiceRequest, check_placeable
from .tasks import ServiceTask, sort_key, task_from_json

log = logging.getLogger(__name__)

SERVICE_ID_LABEL = "com.docker.swarm.service.id"
DEFAULT_WAIT = 300.0


@dataclass(frozen=True)
class SwarmServiceInfo:
    """A service as the manager reports it."""

    id: str
    name: str
    image: str
    replicas: int
    labels: dict[str, str] = field(default_factory=dict)
    version: int = 0
    created: Optional[datetime] = None
    updated: Optional[datetime] = None
    update_state: str = ""


def service_from_json(data: dict[str, Any]) -> SwarmServiceInfo:
    spec = data.get("Spec") or {}
    container = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {})
    replicated = (spec.get("Mode") or {}).get("Replicated")
    return SwarmServiceInfo(
        id=str(data.get("ID", "")),
        name=str(spec.get("Name", "")),
        image=str(container.get("Image", "")),
        replicas=int((replicated or {}).get("Replicas") or 0),
        labels=dict(spec.get("Labels") or {}),
        version=int((data.get("Version") or {}).get("Index") or 0),
        created=parse_time(data.get("CreatedAt")),
        updated=parse_time(data.get("UpdatedAt")),
        update_state=str((data.get("UpdateStatus") or {}).get("State", "")),
    )


class ClusterServices:
    """The service and node operations of one manager."""

    def __init__(self, api: SwarmAPI) -> None:
        self.api = api

    # -- nodes ----------------------------------------------------------------------------------
    def nodes(self) -> list[SwarmNode]:
        return sorted((node_from_json(n) for n in self.api.nodes()), key=lambda n: (n.role != "manager", n.name))

    def node(self, name_or_id: str) -> SwarmNode:
        for node in self.nodes():
            if name_or_id in (node.name, node.id):
                return node
        names = ", ".join(n.name for n in self.nodes())
        raise errors.NotFound(f"node {name_or_id} is not part of the swarm", hint=f"nodes: {names} (%ctr nodes)")

    # -- images ---------------------------------------------------------------------------------
    def pin_image(self, ref: str) -> tuple[str, str]:
        """(``name:tag@digest``, digest): the registry's digest for *ref*, so every node runs the same bytes."""
        parsed = parse_reference(ref)
        if parsed.digest:
            return ref, parsed.digest
        digest = str((self.api.distribution_inspect(str(parsed)).get("Descriptor") or {}).get("digest", ""))
        if not digest:
            raise errors.NotFound(f"the registry of {ref} reports no digest for it",
                                  hint="push the image to a registry every node can reach")
        return f"{parsed}@{digest}", digest

    # -- services -------------------------------------------------------------------------------
    def inspect(self, name: str) -> SwarmServiceInfo:
        return service_from_json(self._raw(name))

    def _raw(self, name: str) -> dict[str, Any]:
        if not name or not name.strip():
            raise errors.InvalidArgument("service name is empty", hint="see %ctr ps for the services")
        try:
            data = self.api.service_inspect(name)
        except errors.NotFound:
            raise errors.NotFound(f"service {name} not found", hint="%ctr ps lists the services and their tasks") \
                from None
        if (data.get("Spec") or {}).get("Name") != name and data.get("ID") != name:
            raise errors.NotFound(f"service {name} not found", hint="%ctr ps lists the services and their tasks")
        return data

    def list(self, *, label: str = "") -> list[SwarmServiceInfo]:
        filters = {"label": [label]} if label else None
        return sorted((service_from_json(s) for s in self.api.services(filters=filters)), key=lambda s: s.name)

    def create(self, req: ServiceRequest, *, wait: bool = True, timeout: float = DEFAULT_WAIT,
               progress: Optional[ProgressCallback] = None) -> SwarmServiceInfo:
        """Create the service (its image pinned to a digest) and, with *wait*, wait for its tasks."""
        constraints = req.validate()
        check_placeable(req, constraints, self.nodes())
        image, _digest = self.pin_image(req.image)
        started = time.time()
        created = self.api.service_create(req.to_spec(image))
        service_id = str(created.get("ID", ""))
        if created.get("Warning") or created.get("Warnings"):
            log.info("service %s: %s", req.name, created.get("Warning") or created.get("Warnings"))
        if wait and req.replicas:
            try:
                self._wait(req.name, service_id, req.replicas, image=image, since=started, timeout=timeout,
                           progress=progress)
            except BaseException:
                with contextlib.suppress(errors.CtrError):
                    self.remove(req.name)
                raise
        return self.inspect(req.name)

    def tasks(self, service: str = "", *, all: bool = True) -> list[ServiceTask]:
        """Tasks of *service* (every service when empty), current and (with *all*) their history."""
        filters: dict[str, list[str]] = {}
        services = {s["ID"]: s["Spec"]["Name"] for s in self.api.services()}
        if service:
            service_id = self._raw(service)["ID"]
            filters["service"] = [service_id]
        if not all:
            filters["desired-state"] = ["running"]
        nodes = {n["ID"]: str((n.get("Description") or {}).get("Hostname", "")) for n in self.api.nodes()}
        tasks = [task_from_json(t, services, nodes) for t in self.api.tasks(filters=filters or None)]
        return sorted(tasks, key=sort_key)

    def _tasks_of(self, service_id: str, name: str = "", *, skip_down: bool = False) -> list[ServiceTask]:
        """The service's tasks; with *skip_down*, none told to stop on a node that is down (they
        cannot report their end until the node returns, and nothing waits for them)."""
        raw_nodes = self.api.nodes()
        nodes = {n["ID"]: str((n.get("Description") or {}).get("Hostname", "")) for n in raw_nodes}
        down = {n["ID"] for n in raw_nodes if (n.get("Status") or {}).get("State") != "ready"} if skip_down else set()
        services = {service_id: name} if name else {}
        tasks = [task_from_json(t, services, nodes) for t in self.api.tasks(filters={"service": [service_id]})]
        return [t for t in tasks if not (t.node_id in down and t.desired_state != "running")]

    def _wait(self, name: str, service_id: str, wanted: int, *, image: str = "", since: Optional[float] = None,
              timeout: float = DEFAULT_WAIT, progress: Optional[ProgressCallback] = None,
              update: bool = False) -> list[ServiceTask]:
        def update_status() -> dict[str, Any]:
            status = dict(self.api.service_inspect(service_id).get("UpdateStatus") or {})
            begun = parse_time(status.get("StartedAt"))
            if not status or (since is not None and (begun is None or begun.timestamp() < since - 1.0)):
                return {"State": "updating", "Message": "waiting for the manager to start the update"}
            return status

        return wait_converged(lambda: self._tasks_of(service_id, name, skip_down=True), name, wanted, image=image,
                              since=since, timeout=timeout, progress=progress,
                              update_status=update_status if update else None)

    def scale(self, name: str, replicas: int, *, wait: bool = True, timeout: float = DEFAULT_WAIT,
              progress: Optional[ProgressCallback] = None) -> SwarmServiceInfo:
        if replicas < 0:
            raise errors.InvalidArgument(f"service {name}: replicas must be 0 or more, not {replicas}")
        data = self._raw(name)
        spec = data["Spec"]
        if "Replicated" not in (spec.get("Mode") or {}):
            raise errors.FailedPrecondition(f"service {name} is global: it runs one task per node",
                                            hint="only replicated services scale")
        current = int(spec["Mode"]["Replicated"].get("Replicas") or 0)
        if replicas == 0 and current > 0:  # remembered, so that starting it again brings them all back
            spec["Labels"] = {**(spec.get("Labels") or {}), REPLICAS_LABEL: str(current)}
        spec["Mode"]["Replicated"]["Replicas"] = int(replicas)
        started = time.time()
        self.api.service_update(data["ID"], int(data["Version"]["Index"]), spec)
        if wait:
            self._wait(name, data["ID"], replicas, since=started, timeout=timeout, progress=progress)
            if replicas == 0:
                self.wait_stopped(name, data["ID"], timeout)
        return self.inspect(name)

    def wait_stopped(self, name: str, service_id: str, timeout: float) -> None:
        ok = _poll(lambda: not any(t.state in ("running", "starting", "preparing")
                                   for t in self._tasks_of(service_id, skip_down=True)), timeout)
        if not ok:
            raise errors.TaskStopTimeout(f"tasks of service {name} still running after {timeout:.0f}s",
                                         hint="see %ctr ps; they stop after their grace period")

    def update(self, name: str, *, image: str = "", env: Optional[list[str]] = None, wait: bool = True,
               timeout: float = DEFAULT_WAIT, progress: Optional[ProgressCallback] = None) -> SwarmServiceInfo:
        """A rolling update of the image and/or env (``KEY=VALUE`` sets, ``KEY-`` removes)."""
        if not image and not env:
            raise errors.InvalidArgument(f"update of service {name}: nothing to change", hint="give --image or --env")
        data = self._raw(name)
        spec = data["Spec"]
        container = spec["TaskTemplate"]["ContainerSpec"]
        if image:
            container["Image"], _digest = self.pin_image(image)
        if env:
            container["Env"] = merge_env(container.get("Env") or [], env)
        if spec == self._raw(name)["Spec"]:
            log.info("service %s already runs that image and env: nothing to update", name)
            return service_from_json(data)
        started = time.time()
        self.api.service_update(data["ID"], int(data["Version"]["Index"]), spec)
        replicas = int(((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas") or 0)
        if wait and replicas:
            self._wait(name, data["ID"], replicas, image=container["Image"], since=started, timeout=timeout,
                       progress=progress, update=True)
        return self.inspect(name)

    def remove(self, name: str, *, wait: bool = True, timeout: float = 120.0,
               containers_left: Optional[Callable[[str], bool]] = None) -> None:
        """Remove the service; with *wait*, until the manager has no task of it left (and, given
        *containers_left* (service id -> any container still on a node), no container either)."""
        data = self._raw(name)
        self.api.service_remove(data["ID"])
        if not wait:
            return

        def gone() -> bool:
            try:
                tasks = self.api.tasks(filters={"service": [data["ID"]]})
            except errors.NotFound:
                tasks = []
            if tasks:
                return False
            return containers_left is None or not containers_left(data["ID"])

        if not _poll(gone, timeout):
            raise errors.TaskStopTimeout(f"tasks of removed service {name} still present after {timeout:.0f}s",
                                         hint="see %ctr ps; a node that is down keeps its containers")

    # -- logs -----------------------------------------------------------------------------------
    def logs(self, name: str, *, follow: bool = False, timeout: Optional[float] = None,
             tail: Optional[int] = None) -> Iterator[tuple[int, str, bytes]]:
        """``(stream, "task@node", line)`` of every task of the service, as the manager merges them."""
        service_id = self._raw(name)["ID"]
        names: dict[str, str] = {}

        def label(attrs: dict[str, str]) -> str:
            task_id = attrs.get("com.docker.swarm.task.id", "")
            if task_id and task_id not in names:
                names.update({t.id: f"{t.name}@{t.node}" for t in self._tasks_of(service_id, name)})
            return names.get(task_id, task_id[:12])

        def pieces() -> Iterator[tuple[int, str, bytes]]:
            with contextlib.suppress(errors.Interrupted):
                frames = self.api.service_logs(service_id, follow=follow, timeout=timeout, details=True,
                                               tail="all" if tail is None else str(int(tail)))
                for stream, data in frames:
                    attrs, message = _split_details(data)
                    yield stream, label(attrs), message

        return pieces()


def _split_details(data: bytes) -> tuple[dict[str, str], bytes]:
    """``k=v,k=v message`` (a log line with details) -> ({k: v}, message)."""
    head, sep, rest = data.partition(b" ")
    if not sep or b"=" not in head:
        return {}, data
    return dict(parse_qsl(head.decode(errors="replace").replace(",", "&"))), rest


def merge_env(current: list[str], changes: list[str]) -> list[str]:
    """``KEY=VALUE`` sets, ``KEY-`` removes; order kept, new keys appended."""
    env = {item.partition("=")[0]: item for item in current}
    for change in changes:
        if change.endswith("-") and "=" not in change:
            env.pop(change[:-1], None)
        elif "=" in change and change.partition("=")[0]:
            env[change.partition("=")[0]] = change
        else:
            raise errors.InvalidArgument(f"env change {change!r} is not KEY=VALUE or KEY-", hint="e.g. MODE=fast")
    return list(env.values())


def _poll(predicate: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    return wait_until(predicate, timeout, interval)


__all__ = ["ClusterServices", "SwarmServiceInfo", "merge_env", "service_from_json"]
