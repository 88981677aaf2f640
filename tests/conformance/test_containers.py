"""Conformance: containers and tasks (create, start, stop, list by label, delete, errors)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ctr_magic import errors
from ctr_magic.types import (
    ContainerSpec,
    CreateContainerRequest,
    DeleteContainerOptions,
    DeleteTaskOptions,
    ExecTaskRequest,
    ListTasksOptions,
    MountSpec,
    StartTaskOptions,
    StopTaskOptions,
    TaskStatus,
)

from .conftest import RUN_ID, RUN_LABEL, Backend


def _exec_out(be: Backend, cid: str, *args: str) -> str:
    out = io.BytesIO()
    result = be.service.exec_task(cid, ExecTaskRequest(args=list(args), stdout=out, stderr=out))
    assert result.exit_code == 0, out.getvalue()
    return out.getvalue().decode()


def test_lifecycle(be: Backend) -> None:
    svc = be.service
    cid = be.create(cmd=["sleep", "3600"], labels={"purpose": "lifecycle"})

    info = svc.get_container(cid)
    assert info.id == cid
    assert info.labels["purpose"] == "lifecycle"
    assert "ctr-magic/busybox" in info.image
    assert info.created_at is not None

    if be.supports("task.created_info"):
        assert svc.get_task_info(cid).status == TaskStatus.CREATED
    else:
        with pytest.raises(errors.NotFound):
            svc.get_task_info(cid)

    svc.start_container(cid, StartTaskOptions())
    task = svc.get_task_info(cid)
    assert task.status == TaskStatus.RUNNING
    assert task.container_id == cid
    assert task.pid > 0

    svc.stop_container(cid, StopTaskOptions(timeout=1, force=True))
    task = svc.get_task_info(cid)
    assert task.status == TaskStatus.STOPPED
    assert task.exit_code == 137  # sleep as pid 1 ignores SIGTERM: it took the SIGKILL

    svc.delete_task(cid)
    if be.supports("delete_task"):
        with pytest.raises(errors.NotFound):
            svc.get_task_info(cid)
    else:
        assert svc.get_task_info(cid).status == TaskStatus.STOPPED

    svc.delete_container(cid)
    with pytest.raises(errors.NotFound, match=cid):
        svc.get_container(cid)
    assert cid not in {c.id for c in svc.list_containers()}


def test_stop_sends_the_signal_and_the_main_process_exits(be: Backend) -> None:
    cid = be.run(["sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done"])
    be.service.stop_container(cid, StopTaskOptions(timeout=10))
    task = be.service.get_task_info(cid)
    assert task.status == TaskStatus.STOPPED
    assert task.exit_code == 7


def test_stop_timeout_without_force(be: Backend) -> None:
    svc = be.service
    cid = be.run()  # sleep as pid 1 ignores SIGTERM
    if be.supports("stop.timeout_error"):
        with pytest.raises(errors.TaskStopTimeout, match=cid):
            svc.stop_container(cid, StopTaskOptions(timeout=0.5))
        assert svc.get_task_info(cid).status == TaskStatus.RUNNING
        svc.stop_container(cid, StopTaskOptions(timeout=0.5, force=True))
    else:
        svc.stop_container(cid, StopTaskOptions(timeout=0.5))
    assert svc.get_task_info(cid).status == TaskStatus.STOPPED


def test_stop_of_a_stopped_container_is_harmless(be: Backend) -> None:
    cid = be.run()
    be.service.stop_container(cid, StopTaskOptions(timeout=0, force=True))
    be.service.stop_container(cid, StopTaskOptions(timeout=0, force=True))
    assert be.service.get_task_info(cid).status == TaskStatus.STOPPED


def test_image_config_applies_and_cmd_replaces_the_whole_command(be: Backend) -> None:
    # The config image has Entrypoint ["/bin/sh", "-c"], Cmd, Env FOO=bar, WorkingDir /work, User app.
    cmd = ["sh", "-c", "echo marker > /tmp/marker; exec sleep 3600"]
    cid = be.run(cmd, image="config", spec=ContainerSpec(env=["EXTRA=1"]))
    assert _exec_out(be, cid, "cat", "/tmp/marker") == "marker\n"
    assert _exec_out(be, cid, "sh", "-c", "echo $FOO $EXTRA; pwd; id -un") == "bar 1\n/work\napp\n"


def test_spec_overrides_work_dir_user_and_env(be: Backend) -> None:
    spec = ContainerSpec(env=["FOO=override"], work_dir="/tmp", user="1000:1000")
    cid = be.run(["sleep", "3600"], image="config", spec=spec)
    assert _exec_out(be, cid, "sh", "-c", "echo $FOO; pwd; id -u; id -g") == "override\n/tmp\n1000\n1000\n"


def test_bind_mount(be: Backend, tmp_path: Path) -> None:
    assert be.supports("create.mounts"), "every backend declares bind mounts"
    (tmp_path / "hello.txt").write_text("from the host\n")
    spec = ContainerSpec(mounts=[MountSpec(destination="/data", type="bind", source=str(tmp_path),
                                           options=["rbind", "ro"])])
    cid = be.run(["sleep", "3600"], spec=spec)
    assert _exec_out(be, cid, "cat", "/data/hello.txt") == "from the host\n"
    result = be.service.exec_task(cid, ExecTaskRequest(args=["touch", "/data/new"]))
    assert result.exit_code != 0, "a read-only bind mount was writable"


def test_list_by_label(be: Backend) -> None:
    group = f"g-{be.new_id(track=False)}"
    a = be.create(cmd=["true"], labels={"group": group, "role": "a"})
    b = be.create(cmd=["true"], labels={"group": group, "role": "b"})
    svc = be.service
    assert {c.id for c in svc.list_containers_by_label("group", group)} == {a, b}
    assert {c.id for c in svc.list_containers_by_label("role", "a")} >= {a}
    assert b not in {c.id for c in svc.list_containers_by_label("role", "a")}
    assert {c.id for c in svc.list_containers_by_label(RUN_LABEL, RUN_ID)} >= {a, b}
    assert svc.list_containers_by_label("group", group + "-none") == []
    assert {a, b} <= {c.id for c in svc.list_containers()}
    with pytest.raises(errors.InvalidArgument):
        svc.list_containers_by_label("", "x")


def test_list_tasks_with_a_filter(be: Backend) -> None:
    cid = be.run()
    other = be.run()
    tasks = be.service.list_tasks(ListTasksOptions(filter=f"container.id=={cid}"))
    assert [t.container_id for t in tasks] == [cid]
    assert tasks[0].status == TaskStatus.RUNNING
    everything = {t.container_id for t in be.service.list_tasks()}
    assert {cid, other} <= everything


def test_duplicate_id_is_already_exists_and_leaves_the_first_alone(be: Backend) -> None:
    cid = be.create(cmd=["sleep", "3600"], labels={"which": "first"})
    with pytest.raises(errors.AlreadyExists, match=cid):
        be.create(cmd=["true"], labels={"which": "second"}, cid=cid)
    assert be.service.get_container(cid).labels["which"] == "first"


@pytest.mark.parametrize(
    ("cid", "image", "what"),
    [("", "busybox", "id"), ("x-valid-id", "", "image")],
)
def test_create_rejects_empty_arguments(be: Backend, cid: str, image: str, what: str) -> None:
    ref = be.images[image] if image else ""
    with pytest.raises(errors.InvalidArgument):
        be.service.create_container(CreateContainerRequest(id=cid, image_ref=ref))
    if cid:
        with pytest.raises(errors.NotFound):
            be.service.get_container(cid)


def test_create_from_an_unknown_image_is_not_found_and_leaves_nothing(be: Backend) -> None:
    registry = be.images["busybox"].split("/", 1)[0]
    cid = be.new_id()
    with pytest.raises(errors.NotFound):
        be.service.create_container(CreateContainerRequest(id=cid, image_ref=f"{registry}/ctr-magic/nope:1"))
    with pytest.raises(errors.NotFound):
        be.service.get_container(cid)


def test_unknown_container_is_not_found_everywhere(be: Backend) -> None:
    svc = be.service
    cid = "cf-never-created"
    for call in (
        lambda: svc.get_container(cid),
        lambda: svc.start_container(cid, StartTaskOptions()),
        lambda: svc.stop_container(cid, StopTaskOptions()),
        lambda: svc.get_task_info(cid),
        lambda: svc.delete_container(cid, DeleteContainerOptions()),
        lambda: svc.exec_task(cid, ExecTaskRequest(args=["true"])),
    ):
        with pytest.raises(errors.NotFound):
            call()


def test_deleting_a_running_container(be: Backend) -> None:
    cid = be.run()
    if be.supports("delete.running_refused"):
        with pytest.raises(errors.FailedPrecondition, match=cid):
            be.service.delete_container(cid)
        assert be.service.get_task_info(cid).status == TaskStatus.RUNNING
    else:
        be.service.delete_container(cid)
        with pytest.raises(errors.NotFound):
            be.service.get_container(cid)


def test_delete_task_force_kills_a_running_task(be: Backend) -> None:
    cid = be.run()
    be.service.delete_task(cid, DeleteTaskOptions(force=True))
    if be.supports("delete_task"):
        with pytest.raises(errors.NotFound):
            be.service.get_task_info(cid)
    else:
        assert be.service.get_task_info(cid).status == TaskStatus.STOPPED
