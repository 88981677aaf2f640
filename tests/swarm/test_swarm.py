"""The swarm backend on a real local cluster of 3 dockerd nodes (see conftest.py)."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import pytest
from swarm_support import run_cell, wait_for

from ctr_magic import errors
from ctr_magic.features import ClusterServices, require
from ctr_magic.notebook.magics.failure import CellFailure
from ctr_magic.swarm.service import SwarmService
from ctr_magic.swarm.specs import ServiceRequest
from ctr_magic.types import ContainerSpec, CreateContainerRequest, DeleteContainerOptions, ExecTaskRequest, TaskStatus

SLEEPER = ["sh", "-c", "echo replica $SLOT on $(hostname); exec sleep 3600"]
# In a magic's command line: a shell that ends at once on SIGTERM, so tasks stop without the grace period.
QUICK_STOP = "sh -c 'trap \"exit 0\" TERM; sleep 3600 & wait'"


def _sleeper(name: str, image: str, replicas: int, **kwargs: Any) -> ServiceRequest:
    return ServiceRequest(name=name, image=image, replicas=replicas, cmd=SLEEPER, env=["SLOT={{.Task.Slot}}"],
                          stop_grace=1.0, **kwargs)


def _containers_on(info: Any, node: str, service: str) -> list[dict[str, Any]]:
    """The containers of *service* that node *node*'s own engine reports (asked directly)."""
    from ctr_magic.docker.api import EngineAPI

    api = EngineAPI(info.node(node).socket)
    try:
        return api.containers(all=True, filters={"label": [f"com.docker.swarm.service.name={service}"]})
    finally:
        api.close()


def test_replicas_spread_over_the_nodes_and_ps_shows_each_tasks_node(
        shell: Any, swarm_info: Any, swarm_images: dict[str, str], service_name: str) -> None:
    result, out, err = run_cell(shell, f"%ctr use swarm --socket {swarm_info.manager_socket}")
    assert result.success, out + err
    result, out, err = run_cell(
        shell, f"%ctr run --replicas 6 --name {service_name} -e SLOT={{{{.Task.Slot}}}} "
               f"--reserve-memory 4m --limit-memory 64m --label team=ml {swarm_images['busybox']} -- {QUICK_STOP}")
    assert result.success, out + err
    assert f"started service {service_name}: 6 task(s) running on node1, node2, node3" in out
    assert "6/6 tasks running" in out  # the progress lines
    result, out, err = run_cell(shell, "df = %ctr ps")
    assert result.success, out + err
    df = shell.user_ns["df"]
    assert isinstance(df, pd.DataFrame)
    mine = df[df["service"] == service_name]
    assert len(mine) == 6 and set(mine["state"]) == {"running"} and set(mine["desired_state"]) == {"running"}
    assert set(mine["node"]) == {"node1", "node2", "node3"}
    assert sorted(mine["task"]) == sorted(f"{service_name}.{i}" for i in range(1, 7))
    assert list(df.columns[:6]) == ["service", "task", "node", "state", "desired_state", "error"]
    result, out, err = run_cell(shell, "labelled = %ctr ps --label team=ml")
    assert result.success, out + err
    assert set(shell.user_ns["labelled"]["service"]) == {service_name}
    # each node's own engine holds the containers ps placed on it
    for node, count in mine.groupby("node").size().items():
        assert len(_containers_on(swarm_info, str(node), service_name)) == count
    # the service runs the image by digest, resources and labels as asked
    spec = SwarmService.connect(swarm_info.manager_socket).api.service_inspect(service_name)["Spec"]
    assert "@sha256:" in spec["TaskTemplate"]["ContainerSpec"]["Image"]
    assert spec["TaskTemplate"]["Resources"] == {"Limits": {"MemoryBytes": 64 << 20},
                                                 "Reservations": {"MemoryBytes": 4 << 20}}
    assert spec["Labels"] == {"team": "ml"}


def test_nodes_frame(shell: Any, swarm_info: Any) -> None:
    run_cell(shell, f"%ctr use swarm --socket {swarm_info.manager_socket}")
    result, out, err = run_cell(shell, "nodes = %ctr nodes")
    assert result.success, out + err
    nodes = shell.user_ns["nodes"]
    assert list(nodes["name"]) == ["node1", "node2", "node3"]
    assert list(nodes["role"]) == ["manager", "worker", "worker"]
    assert set(nodes["availability"]) == {"active"} and set(nodes["state"]) == {"ready"}
    assert (nodes["cpus"] > 0).all() and (nodes["memory"] > 0).all()
    assert all(labels["ctr-magic.engine"].startswith("unix://") for labels in nodes["labels"])


def test_exec_lands_in_the_right_container_on_a_worker(swarm: SwarmService, swarm_info: Any,
                                                       swarm_images: dict[str, str], service_name: str) -> None:
    swarm.create_service(_sleeper(service_name, swarm_images["busybox"], 3))
    on_worker = [t for t in swarm.service_tasks(service_name, all=False) if t.node in ("node2", "node3")]
    assert on_worker
    task = on_worker[0]
    out = io.BytesIO()
    result = swarm.exec_task(f"{service_name}@{task.node}", ExecTaskRequest(
        args=["sh", "-c", "hostname; echo $SLOT; cat"], stdin=b"from stdin", stdout=out))
    assert result.exit_code == 0
    hostname, slot, echoed = out.getvalue().decode().splitlines()
    assert task.container_id.startswith(hostname)  # the container's host name is its short id
    assert slot == str(task.slot) and echoed == "from stdin"
    assert [c["Id"] for c in _containers_on(swarm_info, task.node, service_name)].count(task.container_id) == 1
    # by SERVICE.SLOT and by task id too
    for target in (task.name, task.id[:10]):
        out = io.BytesIO()
        assert swarm.exec_task(target, ExecTaskRequest(args=["hostname"], stdout=out)).exit_code == 0
        assert task.container_id.startswith(out.getvalue().decode().strip())
    stats = swarm.stats(task.name)
    assert stats["container"] == task.container_id and stats["memory"] > 0
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        payload = b"hello node\n"
        member = tarfile.TarInfo("greeting.txt")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    swarm.copy_to(task.name, "/tmp", data.getvalue())
    with tarfile.open(fileobj=io.BytesIO(swarm.copy_from(task.name, "/tmp/greeting.txt"))) as tar:
        assert tar.extractfile("greeting.txt").read() == b"hello node\n"  # type: ignore[union-attr]


def test_logs_from_every_replica(shell: Any, swarm: SwarmService, swarm_info: Any,
                                 swarm_images: dict[str, str], service_name: str) -> None:
    swarm.create_service(_sleeper(service_name, swarm_images["busybox"], 3))
    tasks = swarm.service_tasks(service_name, all=False)
    expected = {f"{t.name}@{t.node} | replica {t.slot} on {t.container_id[:12]}" for t in tasks}

    def seen() -> set[str]:
        return {line for line in b"".join(swarm.logs(service_name)).decode().splitlines()} & expected

    wait_for(lambda: seen() == expected, 60, what="a log line of every replica")
    run_cell(shell, f"%ctr use swarm --socket {swarm_info.manager_socket}")
    result, out, err = run_cell(shell, f"%ctr logs {service_name}")
    assert result.success, err
    assert expected <= set(out.splitlines())


def test_scale_up_and_down(swarm: SwarmService, swarm_info: Any, swarm_images: dict[str, str],
                           service_name: str) -> None:
    swarm.create_service(_sleeper(service_name, swarm_images["busybox"], 2))
    steps: list[Any] = []
    swarm.scale(service_name, 5, progress=steps.append)
    assert steps[-1].running == 5 and steps[-1].state == "converged"
    assert len([t for t in swarm.service_tasks(service_name) if t.live]) == 5
    swarm.scale(service_name, 1)
    live = [t for t in swarm.service_tasks(service_name) if t.live]
    assert len(live) == 1
    running = sum(1 for node in ("node1", "node2", "node3") for c in _containers_on(swarm_info, node, service_name)
                  if c["State"] == "running")
    assert running == 1


def test_rolling_update_of_image_and_env(shell: Any, swarm: SwarmService, swarm_info: Any,
                                         swarm_images: dict[str, str], service_name: str) -> None:
    swarm.create_service(_sleeper(service_name, swarm_images["busybox"], 3))
    before = {t.id for t in swarm.service_tasks(service_name, all=False)}
    run_cell(shell, f"%ctr use swarm --socket {swarm_info.manager_socket}")
    result, out, err = run_cell(
        shell, f"%ctr update {service_name} --image {swarm_images['config']} -e MODE=fast")
    assert result.success, out + err
    assert "updating" in out and "3/3 tasks running, completed" in out
    tasks = swarm.service_tasks(service_name)
    live = [t for t in tasks if t.live]
    assert len(live) == 3 and not {t.id for t in live} & before
    pinned, _digest = swarm.pin_image(swarm_images["config"])
    assert {t.image for t in live} == {pinned}
    assert {t.desired_state for t in tasks if t.id in before} == {"shutdown"}
    out_bytes = io.BytesIO()
    swarm.exec_task(live[0].name, ExecTaskRequest(args=["sh", "-c", "echo $MODE"], stdout=out_bytes))
    assert out_bytes.getvalue() == b"fast\n"


def test_the_contract_maps_containers_to_services(swarm: SwarmService, swarm_images: dict[str, str],
                                                  service_name: str) -> None:
    info = swarm.create_container(CreateContainerRequest(
        id=service_name, image_ref=swarm_images["busybox"], labels={"ctr-magic.replicas": "2"},
        spec=ContainerSpec(cmd=["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"])))
    assert info.id == service_name and info.runtime.name == "swarm"
    assert swarm.get_task_info(service_name).status == TaskStatus.CREATED
    assert service_name in [c.id for c in swarm.list_containers_by_label("ctr-magic.replicas", "2")]
    swarm.start_container(service_name)
    assert swarm.get_task_info(service_name).status == TaskStatus.RUNNING
    mine = [t for t in swarm.list_tasks() if t.container_id == service_name]
    assert [t.status for t in mine] == [TaskStatus.RUNNING] * 2
    with pytest.raises(errors.FailedPrecondition, match=f"service {service_name} has running tasks"):
        swarm.delete_container(service_name)
    swarm.stop_container(service_name)
    assert swarm.get_task_info(service_name).status == TaskStatus.STOPPED
    swarm.scale(service_name, 3)
    swarm.stop_container(service_name)  # remembers the 3 it stopped ...
    swarm.start_container(service_name)  # ... and brings them back
    assert len([t for t in swarm.service_tasks(service_name) if t.live]) == 3
    swarm.stop_container(service_name)
    swarm.delete_container(service_name, DeleteContainerOptions())
    with pytest.raises(errors.NotFound, match=f"service {service_name} not found"):
        swarm.get_container(service_name)
    with pytest.raises(errors.NotSupported, match="snapshots are not supported by the swarm backend"):
        swarm.list_snapshots("overlayfs")


# -- bad input: one line, nothing left ------------------------------------------------------------------


def _one_line(result: Any, out: str, kind: type[BaseException]) -> str:
    assert not result.success
    assert isinstance(result.error_in_exec, CellFailure) and isinstance(result.error_in_exec, kind)
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_impossible_constraint_is_one_line_and_creates_nothing(shell: Any, swarm: SwarmService, swarm_info: Any,
                                                               swarm_images: dict[str, str], service_name: str) -> None:
    run_cell(shell, f"%ctr use swarm --socket {swarm_info.manager_socket}")
    result, out, _ = run_cell(shell, f"%ctr run --replicas 2 --name {service_name} "
                                     f"--constraint node.labels.zone==mars {swarm_images['busybox']} -- sleep 1")
    line = _one_line(result, out, errors.InvalidArgument)
    assert "no ready node satisfies the constraint node.labels.zone==mars" in line and "node1, node2, node3" in line
    result, out, _ = run_cell(shell, f"%ctr run --name {service_name} --constraint node.hostname=node2 "
                                     f"{swarm_images['busybox']} -- sleep 1")
    assert "is not FIELD==VALUE" in _one_line(result, out, errors.InvalidArgument)
    result, out, _ = run_cell(shell, f"%ctr run --name {service_name} --reserve-memory 1000t "
                                     f"{swarm_images['busybox']} -- sleep 1")
    assert "memory to reserve" in _one_line(result, out, errors.InvalidArgument)
    missing = swarm_images["busybox"].replace("busybox:latest", "nothing:here")
    result, out, _ = run_cell(shell, f"%ctr run --name {service_name} {missing} -- sleep 1")
    assert "nothing:here" in _one_line(result, out, errors.CtrError)
    assert service_name not in {s.name for s in swarm.services()}
    assert not [t for t in swarm.service_tasks() if t.service == service_name]


def test_unknown_node_is_one_line(shell: Any, swarm: SwarmService, swarm_info: Any,
                                  swarm_images: dict[str, str], service_name: str) -> None:
    run_cell(shell, f"%ctr use swarm --socket {swarm_info.manager_socket}")
    result, out, _ = run_cell(shell, "%ctr use swarm --node node9=/run/nowhere.sock")
    line = _one_line(result, out, errors.InvalidArgument)
    assert "node node9 is not part of the swarm" in line and "node1, node2, node3" in line
    swarm.create_service(_sleeper(service_name, swarm_images["busybox"], 1))
    result, out, _ = run_cell(shell, f"%ctr exec {service_name}@node9 -- true")
    assert "node node9 is not part of the swarm" in _one_line(result, out, errors.NotFound)
    result, out, _ = run_cell(shell, "%ctr exec no-such-service -- true")
    assert "no running task no-such-service" in _one_line(result, out, errors.NotFound)


def test_exec_without_an_endpoint_names_the_node_and_the_option(swarm: SwarmService, swarm_images: dict[str, str],
                                                                service_name: str) -> None:
    swarm.create_service(_sleeper(service_name, swarm_images["busybox"], 1, constraints=["node.hostname==node3"]))
    bare = SwarmService(swarm.manager.api)  # no --node given; node3's label is hidden below
    node3 = swarm.cluster.node("node3")
    data = swarm.api.node_inspect(node3.id)
    spec = dict(data["Spec"])
    spec["Labels"] = {}
    swarm.api.node_update(node3.id, data["Version"]["Index"], spec)
    try:
        with pytest.raises(errors.NotSupported) as caught:
            bare.exec_task(service_name, ExecTaskRequest(args=["true"]))
        assert "no engine endpoint known for node node3" in str(caught.value)
        assert "--node NAME=SOCKET" in str(caught.value) and "\n" not in str(caught.value)
        bare.add_node_endpoint(f"node3={node3.labels['ctr-magic.engine']}")
        assert bare.exec_task(service_name, ExecTaskRequest(args=["true"])).exit_code == 0
    finally:
        swarm.api.node_label(node3.id, dict(node3.labels))


def test_replicas_on_a_backend_without_services_is_not_supported() -> None:
    class Plain:
        backend = "containerd"

    with pytest.raises(errors.NotSupported) as caught:
        require(Plain(), ClusterServices, "%ctr run --replicas")
    assert "%ctr run --replicas: the containerd backend does not support services with replicas" in str(
        caught.value)
    assert "%ctr use swarm --socket MANAGER" in str(caught.value)


def test_a_node_engine_over_tcp(swarm: SwarmService, swarm_info: Any, swarm_images: dict[str, str],
                                service_name: str) -> None:
    from swarm_support import UnixRelay

    swarm.create_service(_sleeper(service_name, swarm_images["busybox"], 1, constraints=["node.hostname==node2"]))
    relay = UnixRelay(swarm_info.gateway, swarm_info.node("node2").socket)  # on the cluster's own bridge
    over_tcp = SwarmService.connect(swarm_info.manager_socket, nodes={"node2": relay.address})
    try:
        out = io.BytesIO()
        result = over_tcp.exec_task(service_name, ExecTaskRequest(args=["sh", "-c", "echo $SLOT; cat"],
                                                                  stdin=b"over tcp", stdout=out))
        assert result.exit_code == 0 and out.getvalue() == b"1\nover tcp"
        assert relay.connections >= 2  # the API calls and the hijacked exec stream
    finally:
        over_tcp.close()
        relay.close()


def test_push_to_the_cluster_registry_and_run_by_digest(swarm: SwarmService, swarm_info: Any,
                                                        swarm_images: dict[str, str], service_name: str) -> None:
    swarm.pull_image(swarm_images["busybox"])
    dest = f"{swarm_info.registry_addr}/ctr-magic/pushed:{service_name}"
    events: list[Any] = []
    digest = swarm.push_image(swarm_images["busybox"], dest=dest, progress=events.append)
    assert digest.startswith("sha256:") and swarm.pin_image(dest) == (f"{dest}@{digest}", digest)
    swarm.create_service(_sleeper(service_name, dest, 3))
    assert {t.image for t in swarm.service_tasks(service_name, all=False)} == {f"{dest}@{digest}"}


def test_the_lock_file_pins_what_every_node_runs(shell: Any, swarm: SwarmService, swarm_info: Any,
                                                 tmp_path: Any, service_name: str) -> None:
    from ctr_magic.notebook.lock import write_lock
    from ctr_magic.testimages import busybox_single_layer, busybox_with_config, publish

    repo, layout = f"ctr-magic/locked-{service_name}", tmp_path / "layout"
    first = busybox_single_layer(layout, tag="first")
    second = busybox_with_config(layout, tag="second")
    ref = f"{swarm_info.registry_addr}/{repo}:latest"
    publish(first.layout, swarm_info.registry_addr, repo, "latest", src_tag="first")
    write_lock(tmp_path / "ctr-lock.json", {ref: first.digest})  # the shell's working directory is tmp_path
    publish(second.layout, swarm_info.registry_addr, repo, "latest", src_tag="second")  # the tag moves on
    run_cell(shell, f"%ctr use swarm --socket {swarm_info.manager_socket}")
    result, out, err = run_cell(shell, f"%ctr run --replicas 2 --name {service_name} {ref} -- {QUICK_STOP}")
    assert result.success, out + err
    assert "locked:" in out
    assert {t.image.rpartition("@")[2] for t in swarm.service_tasks(service_name, all=False)} == {first.digest}


def test_scale_and_update_bad_input_is_one_line(shell: Any, swarm: SwarmService, swarm_info: Any,
                                                swarm_images: dict[str, str], service_name: str) -> None:
    run_cell(shell, f"%ctr use swarm --socket {swarm_info.manager_socket}")
    result, out, _ = run_cell(shell, f"%ctr scale {service_name}")
    assert "is not SERVICE=N" in _one_line(result, out, errors.InvalidArgument)
    result, out, _ = run_cell(shell, "%ctr scale no-such-service=2")
    assert "service no-such-service not found" in _one_line(result, out, errors.NotFound)
    swarm.create_service(_sleeper(service_name, swarm_images["busybox"], 1))
    version = swarm.api.service_inspect(service_name)["Version"]["Index"]
    result, out, _ = run_cell(shell, f"%ctr update {service_name} -e =oops")
    _one_line(result, out, errors.InvalidArgument)
    missing = swarm_images["busybox"].replace("busybox:latest", "nothing:here")
    result, out, _ = run_cell(shell, f"%ctr update {service_name} --image {missing}")
    assert "nothing:here" in _one_line(result, out, errors.CtrError)
    assert swarm.api.service_inspect(service_name)["Version"]["Index"] == version  # nothing changed
    result, out, err = run_cell(shell, f"%ctr scale {service_name}=2")
    assert result.success and f"scaled {service_name} to 2" in out, out + err


def test_interrupting_the_wait_of_a_new_service_leaves_nothing(swarm: SwarmService, swarm_info: Any,
                                                              swarm_images: dict[str, str], service_name: str) -> None:
    def stop_button(step: Any) -> None:
        raise KeyboardInterrupt  # what the notebook's stop button raises while `%ctr run --replicas` waits

    with pytest.raises(KeyboardInterrupt):
        swarm.create_service(_sleeper(service_name, swarm_images["busybox"], 3), progress=stop_button)
    assert service_name not in {s.name for s in swarm.services()}
    assert not [t for t in swarm.service_tasks() if t.service == service_name]
    for node in ("node1", "node2", "node3"):
        assert _containers_on(swarm_info, node, service_name) == []
