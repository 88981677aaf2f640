"""Service requests -> ServiceSpec, constraint and size parsing, env changes, placement checks (no daemon)."""

from __future__ import annotations

import pytest

from ctr_magic import errors
from ctr_magic.swarm.nodes import SwarmNode, engine_socket, node_from_json, parse_node_option
from ctr_magic.swarm.services import _split_details, merge_env
from ctr_magic.swarm.specs import (
    Resources,
    ServiceRequest,
    check_placeable,
    parse_constraint,
    parse_cpus,
    parse_size,
)
from ctr_magic.swarm.tasks import task_from_json
from ctr_magic.types import MountSpec, TaskStatus


def _node(name: str, role: str = "worker", labels: dict[str, str] | None = None, state: str = "ready",
          memory: int = 8 << 30) -> SwarmNode:
    return SwarmNode(id=f"id-{name}", name=name, role=role, availability="active", state=state, address="10.0.0.1",
                     cpus=2.0, memory=memory, labels=labels or {})


def test_spec_carries_replicas_constraints_resources_env_mounts_labels() -> None:
    req = ServiceRequest(name="web", image="reg/x:1", replicas=4, cmd=["sleep", "1"], env=["A=1"],
                         mounts=[MountSpec(destination="/data", type="tmpfs", options=["size=64m"])],
                         labels={"team": "ml"}, constraints=["node.labels.zone == a"],
                         reservations=Resources(cpus=0.25, memory=32 << 20), limits=Resources(cpus=1.0))
    req.validate()
    spec = req.to_spec("reg/x:1@sha256:" + "a" * 64)
    template = spec["TaskTemplate"]
    assert spec["Mode"] == {"Replicated": {"Replicas": 4}} and spec["Labels"] == {"team": "ml"}
    assert template["ContainerSpec"]["Image"].endswith("a" * 64)
    assert template["ContainerSpec"]["Command"] == ["sleep", "1"] and template["ContainerSpec"]["Env"] == ["A=1"]
    assert template["ContainerSpec"]["Mounts"][0]["TmpfsOptions"] == {"SizeBytes": 64 << 20}
    assert template["Placement"] == {"Constraints": ["node.labels.zone==a"]}
    assert template["Resources"] == {"Limits": {"NanoCPUs": 1_000_000_000},
                                     "Reservations": {"NanoCPUs": 250_000_000, "MemoryBytes": 32 << 20}}


@pytest.mark.parametrize("text", ["node.labels.x=y", "zone==a", "node.role ~ worker", ""])
def test_bad_constraints_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="is not FIELD==VALUE"):
        parse_constraint(text)


def test_sizes_and_cpus() -> None:
    assert parse_size("64m", "x") == 64 << 20 and parse_size("1.5g", "x") == 3 << 29 and parse_size("512MiB", "x")
    for bad in ("lots", "-1m", ""):
        with pytest.raises(errors.InvalidArgument):
            parse_size(bad, "--reserve-memory")
    assert parse_cpus("0.5", "x") == 0.5
    with pytest.raises(errors.InvalidArgument, match="not a positive number of CPUs"):
        parse_cpus("0", "--limit-cpus")


@pytest.mark.parametrize("req, message", [
    (ServiceRequest(name="", image="x"), "service name"),
    (ServiceRequest(name="a b", image="x"), "service name"),
    (ServiceRequest(name="ok", image=" "), "image is empty"),
    (ServiceRequest(name="ok", image="x", replicas=-1), "replicas must be 0 or more"),
    (ServiceRequest(name="ok", image="x", reservations=Resources(memory=2), limits=Resources(memory=1)),
     "reservation exceeds the limit"),
])  # fmt: skip
def test_validation(req: ServiceRequest, message: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=message):
        req.validate()


def test_placement_check_models_hostname_role_and_labels() -> None:
    nodes = [_node("node1", "manager"), _node("node2", labels={"zone": "a"}), _node("node3", state="down")]
    ok = ServiceRequest(name="s", image="x", constraints=["node.labels.zone==a", "node.role!=manager"])
    check_placeable(ok, ok.validate(), nodes)
    check_placeable(ok, [parse_constraint("node.platform.arch==x86_64")], nodes)  # not modelled: manager decides
    for constraint in ("node.hostname==node3", "node.labels.zone==b", "node.hostname==nowhere"):
        req = ServiceRequest(name="s", image="x", constraints=[constraint])
        with pytest.raises(errors.InvalidArgument, match=f"no ready node satisfies the constraint {constraint}"):
            check_placeable(req, req.validate(), nodes)
    big = ServiceRequest(name="s", image="x", reservations=Resources(memory=64 << 30))
    with pytest.raises(errors.InvalidArgument, match="memory to reserve"):
        check_placeable(big, big.validate(), nodes)


def test_env_changes() -> None:
    assert merge_env(["A=1", "B=2"], ["B=3", "C=4", "A-"]) == ["B=3", "C=4"]
    with pytest.raises(errors.InvalidArgument, match="KEY=VALUE or KEY-"):
        merge_env([], ["=x"])


def test_node_options() -> None:
    assert parse_node_option("node2=/run/n2.sock") == ("node2", "/run/n2.sock")
    assert parse_node_option("node2=unix:///run/n2.sock") == ("node2", "/run/n2.sock")
    with pytest.raises(errors.InvalidArgument, match="is not NAME=SOCKET"):
        parse_node_option("node2")
    assert parse_node_option("node2=tcp://10.0.0.2:2375") == ("node2", "tcp://10.0.0.2:2375")
    with pytest.raises(errors.InvalidArgument, match="is not tcp://HOST:PORT"):
        engine_socket("tcp://10.0.0.2", "node2")
    with pytest.raises(errors.NotSupported, match="only unix sockets and tcp://"):
        engine_socket("ssh://node2", "node2")


def test_node_and_task_json() -> None:
    node = node_from_json({"ID": "n1", "Spec": {"Role": "manager", "Availability": "active", "Labels": {"a": "b"}},
                           "Description": {"Hostname": "node1", "Resources": {"NanoCPUs": 2_000_000_000,
                                                                               "MemoryBytes": 1 << 30}},
                           "Status": {"State": "ready", "Addr": "10.214.0.12"},
                           "ManagerStatus": {"Leader": True}})
    assert (node.name, node.role, node.cpus, node.memory, node.manager_status) == ("node1", "manager", 2.0, 1 << 30,
                                                                                    "leader")
    task = task_from_json({"ID": "t1", "ServiceID": "s1", "Slot": 3, "NodeID": "n1", "DesiredState": "running",
                           "Status": {"State": "failed", "Err": "boom", "ContainerStatus": {"ExitCode": 2}},
                           "Spec": {"ContainerSpec": {"Image": "x"}}}, {"s1": "web"}, {"n1": "node1"})
    assert (task.name, task.node, task.error, task.exit_code, task.status) == ("web.3", "node1", "boom", 2,
                                                                                TaskStatus.STOPPED)


def test_log_details_are_split_from_the_message() -> None:
    attrs, message = _split_details(b"com.docker.swarm.node.id=n1,com.docker.swarm.task.id=t1 hello world\n")
    assert attrs == {"com.docker.swarm.node.id": "n1", "com.docker.swarm.task.id": "t1"}
    assert message == b"hello world\n"
    assert _split_details(b"plain line\n") == ({}, b"plain line\n")
