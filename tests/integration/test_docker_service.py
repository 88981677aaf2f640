"""DockerService against a real, private dockerd (on the session's containerd, own data root and socket).

What every backend shares is in tests/conformance; this file covers what is Docker's own: the
connection, version negotiation, logs, events, kill/wait, interrupting an exec, mounts and the
name-versus-id-prefix rule.
"""

from __future__ import annotations

import _thread
import contextlib
import io
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tasks_support import wait_for

from ctr_magic import connect, errors
from ctr_magic.docker.service import DockerService, socket_from_env
from ctr_magic.env import EnvironmentInfo
from ctr_magic.ocilayout import OCILayout
from ctr_magic.testimages import large_random_image, publish
from ctr_magic.types import (
    ContainerSpec,
    CreateContainerRequest,
    DeleteContainerOptions,
    ExecTaskRequest,
    LayerProgress,
    ListTasksOptions,
    MountSpec,
    PullImageOptions,
    StartTaskOptions,
    StopTaskOptions,
    TaskStatus,
)


@pytest.fixture(scope="module")
def svc(dockerd: EnvironmentInfo) -> Iterator[DockerService]:
    service = DockerService.connect(dockerd.dockerd_socket)
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def made(svc: DockerService) -> Iterator[list[str]]:
    """Container ids a test creates; removed afterwards even when the test fails."""
    ids: list[str] = []
    yield ids
    for cid in ids:
        with contextlib.suppress(errors.CtrError):
            svc.delete_container(cid, DeleteContainerOptions(force=True))


def _create(svc: DockerService, made: list[str], image: str, cmd: list[str], **spec: object) -> str:
    cid = f"dk-{secrets.token_hex(5)}"
    made.append(cid)
    svc.create_container(CreateContainerRequest(id=cid, image_ref=image, spec=ContainerSpec(cmd=cmd, **spec)))
    return cid


# ------------------------------------------------------------------------------------------ connection


def test_socket_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert socket_from_env() == "/var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/other.sock")
    assert socket_from_env() == "/run/other.sock"
    assert socket_from_env("unix:///x.sock") == "/x.sock"
    assert socket_from_env("/y.sock") == "/y.sock"
    with pytest.raises(errors.NotSupported, match="unix"):
        socket_from_env("tcp://127.0.0.1:2375")


def test_connect_through_the_package_entry_point(dockerd: EnvironmentInfo) -> None:
    with connect("docker", socket=dockerd.dockerd_socket) as service:
        assert isinstance(service, DockerService)
        assert service.ping()
    with pytest.raises(errors.InvalidArgument, match="bogus"):
        connect("docker", socket=dockerd.dockerd_socket, bogus=1)


def test_version_negotiation(svc: DockerService, dockerd: EnvironmentInfo) -> None:
    version = svc.version()
    assert version.api_version == "1.41"  # Debian's dockerd 20.10
    assert svc.api.api_version == "1.41"
    assert "containerd" in version.components
    with DockerService.connect(dockerd.dockerd_socket, api_version="1.40") as older:
        assert older.api.api_version == "1.40"
        assert older.ping()


def test_unreachable_daemon_is_unavailable_with_a_hint(tmp_path: Path) -> None:
    with DockerService.connect(str(tmp_path / "missing.sock")) as service:
        with pytest.raises(errors.Unavailable, match="cannot reach") as info:
            service.list_containers()
        assert "missing.sock" in str(info.value)
        assert info.value.hint


# ------------------------------------------------------------------------------------------ images


@pytest.fixture(scope="module")
def big_image(registry: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 16 MiB single-layer image: big enough that a pull is still running when interrupted."""
    layout = OCILayout(tmp_path_factory.mktemp("big-image"))
    built = large_random_image(layout, layers=1, size_mib=16, seed=7, tag="big")
    publish(built.layout, registry, "ctr-magic/docker-big", "1", src_tag="big", all_platforms=False)
    return f"{registry}/ctr-magic/docker-big:1"


def test_interrupted_pull_leaves_no_image_and_a_rerun_works(svc: DockerService, big_image: str) -> None:
    with contextlib.suppress(errors.NotFound):
        svc.delete_image(big_image)
    seen: list[LayerProgress] = []

    def progress(event: LayerProgress) -> None:
        seen.append(event)
        if event.state == "downloading" and 0 < event.done < event.total:
            os.kill(os.getpid(), signal.SIGINT)  # the notebook's stop button, mid-download

    with pytest.raises(KeyboardInterrupt):
        svc.pull_image(big_image, PullImageOptions(progress=progress))
    assert not any(e.state == "unpacked" for e in seen)
    with pytest.raises(errors.NotFound):
        svc.get_image(big_image)
    info = svc.pull_image(big_image)
    assert svc.get_image(big_image).id == info.id
    svc.delete_image(big_image)


# ------------------------------------------------------------------------------------------ containers


def test_names_never_match_another_containers_id_prefix(svc: DockerService, made: list[str],
                                                        test_images: dict[str, str]) -> None:
    cid = _create(svc, made, test_images["busybox"], ["true"])
    docker_id = svc.get_container(cid).snapshot_key
    prefix = docker_id[:10]
    with pytest.raises(errors.NotFound):
        svc.get_container(prefix)  # Docker itself would answer with the container
    with pytest.raises(errors.NotFound):
        svc.delete_container(prefix)
    assert svc.get_container(cid).id == cid


@pytest.mark.parametrize("bad", ["a", "bad/name", "-dash"])
def test_invalid_names_are_refused(svc: DockerService, test_images: dict[str, str], bad: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="name"):
        svc.create_container(CreateContainerRequest(id=bad, image_ref=test_images["busybox"]))


def test_mounts_tmpfs_and_bad_mounts_leave_nothing(svc: DockerService, made: list[str],
                                                   test_images: dict[str, str], tmp_path: Path) -> None:
    cid = _create(svc, made, test_images["busybox"], ["sleep", "3600"],
                  mounts=[MountSpec(destination="/scratch", type="tmpfs", options=["size=1m"])])
    svc.start_container(cid)
    out = io.BytesIO()
    assert svc.exec_task(cid, ExecTaskRequest(args=["sh", "-c", "grep /scratch /proc/mounts"], stdout=out)
                         ).exit_code == 0
    assert b"tmpfs" in out.getvalue()

    for mount, needle in [
        (MountSpec(destination="/x", type="bind", source=str(tmp_path / "missing")), "missing"),
        (MountSpec(destination="/x", type="proc", source="proc"), "proc"),
        (MountSpec(destination="", type="bind", source=str(tmp_path)), "destination"),
    ]:
        bad = f"dk-bad-{secrets.token_hex(4)}"
        made.append(bad)
        with pytest.raises(errors.InvalidArgument, match=needle):
            svc.create_container(CreateContainerRequest(id=bad, image_ref=test_images["busybox"],
                                                        spec=ContainerSpec(mounts=[mount])))
        with pytest.raises(errors.NotFound):
            svc.get_container(bad)


def test_terminal_start_needs_a_tty_container(svc: DockerService, made: list[str],
                                              test_images: dict[str, str]) -> None:
    cid = _create(svc, made, test_images["busybox"], ["true"])
    with pytest.raises(errors.InvalidArgument, match="tty"):
        svc.start_container(cid, StartTaskOptions(terminal=True))
    assert svc.get_task_info(cid).status == TaskStatus.CREATED


def test_image_in_use_cannot_be_deleted(svc: DockerService, made: list[str], test_images: dict[str, str]) -> None:
    _create(svc, made, test_images["layers"], ["true"])
    with pytest.raises(errors.FailedPrecondition, match="layers"):
        svc.delete_image(test_images["layers"])
    assert svc.get_image(test_images["layers"])


# ------------------------------------------------------------------------------------------ tasks


def test_logs_wait_and_exit_code(svc: DockerService, made: list[str], test_images: dict[str, str]) -> None:
    cid = _create(svc, made, test_images["busybox"], ["sh", "-c", "echo out-line; echo err-line >&2; exit 4"])
    svc.start_container(cid)
    assert svc.wait_task(cid, timeout=30) == 4
    assert sorted(b"".join(svc.logs(cid)).splitlines()) == [b"err-line", b"out-line"]
    pieces = list(svc.iter_logs(cid))
    assert b"".join(d for s, d in pieces if s == 1) == b"out-line\n"
    assert b"".join(d for s, d in pieces if s == 2) == b"err-line\n"
    assert len(b"".join(svc.logs(cid, tail=1)).splitlines()) == 1
    with pytest.raises(errors.NotFound):
        svc.logs("dk-never-created")
    assert svc.get_task_info(cid).exit_code == 4


def test_kill_task_and_wait_timeout(svc: DockerService, made: list[str], test_images: dict[str, str]) -> None:
    cid = _create(svc, made, test_images["busybox"], ["sleep", "3600"])
    svc.start_container(cid)
    with pytest.raises(errors.Interrupted, match="still running"):
        svc.wait_task(cid, timeout=0.3)
    assert list(svc.logs(cid, follow=True, timeout=0.3)) == []  # silent: the follow ends after the timeout
    svc.kill_task(cid, 9)
    assert svc.wait_task(cid, timeout=30) == 137


def test_events_report_the_container_lifecycle(svc: DockerService, made: list[str],
                                               test_images: dict[str, str]) -> None:
    since = str(int(time.time()) - 1)
    cid = _create(svc, made, test_images["busybox"], ["true"])
    svc.start_container(cid)
    svc.wait_task(cid, timeout=30)
    until = str(int(time.time()) + 1)
    actions = [e.get("Action") for e in svc.events(since=since, until=until,
                                                    filters={"container": [cid], "type": ["container"]})]
    assert {"create", "start", "die"} <= set(actions)


def test_bad_task_filter_is_invalid(svc: DockerService) -> None:
    with pytest.raises(errors.InvalidArgument, match="unknown field"):
        svc.list_tasks(ListTasksOptions(filter="colour==blue"))
    with pytest.raises(errors.InvalidArgument):
        svc.list_tasks(ListTasksOptions(filter="status"))


def test_start_with_stdio_copies_output_here(svc: DockerService, made: list[str], test_images: dict[str, str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cid = _create(svc, made, test_images["busybox"], ["sh", "-c", "echo hello-stdio; echo oops >&2"])
    svc.start_container(cid, StartTaskOptions(use_stdio=True))
    assert svc.wait_task(cid, timeout=30) == 0
    seen_out, seen_err = "", ""
    deadline = time.monotonic() + 10
    while ("hello-stdio" not in seen_out or "oops" not in seen_err) and time.monotonic() < deadline:
        captured = capsys.readouterr()
        seen_out += captured.out
        seen_err += captured.err
        time.sleep(0.02)  # polling captured output with a deadline: the copy runs in a thread
    assert "hello-stdio" in seen_out
    assert "oops" in seen_err


# ------------------------------------------------------------------------------------------ exec


def _running(svc: DockerService, cid: str, pattern: str) -> bool:
    out = io.BytesIO()
    svc.exec_task(cid, ExecTaskRequest(args=["ps", "-o", "args"], stdout=out))
    return pattern in out.getvalue().decode()


@pytest.mark.parametrize("how", ["sigint", "interrupt_main"])
def test_interrupted_exec_kills_the_process(svc: DockerService, made: list[str], test_images: dict[str, str],
                                            how: str) -> None:
    cid = _create(svc, made, test_images["busybox"], ["sleep", "3600"])
    svc.start_container(cid)
    started = threading.Event()

    class Marker(io.BytesIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            started.set()
            return super().write(data)

    def interrupt_when_started() -> None:
        if not started.wait(30):
            return
        if how == "sigint":
            os.kill(os.getpid(), signal.SIGINT)  # what the notebook's stop button sends the kernel
        else:
            _thread.interrupt_main()  # only flags the main thread: no system call is interrupted

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        svc.exec_task(cid, ExecTaskRequest(args=["sh", "-c", "echo go; exec sleep 4321"], stdout=Marker()))
    wait_for(lambda: not _running(svc, cid, "sleep 4321"), what="the exec'd 'sleep 4321' to be gone")


def test_closing_a_running_session_kills_its_process(svc: DockerService, made: list[str],
                                                     test_images: dict[str, str]) -> None:
    cid = _create(svc, made, test_images["busybox"], ["sleep", "3600"])
    svc.start_container(cid)
    session = svc.exec_task_streaming(cid, ExecTaskRequest(args=["sh", "-c", "echo ready; exec sleep 4322"]))
    assert session.stdout is not None
    assert session.stdout.readline() == b"ready\n"
    session.close()
    session.close()  # idempotent
    wait_for(lambda: not _running(svc, cid, "sleep 4322"), what="the exec'd 'sleep 4322' to be gone")


def test_exec_inherits_the_containers_user_and_dir(svc: DockerService, made: list[str],
                                                   test_images: dict[str, str]) -> None:
    cid = _create(svc, made, test_images["config"], ["sleep", "3600"])
    svc.start_container(cid)
    out = io.BytesIO()
    svc.exec_task(cid, ExecTaskRequest(args=["sh", "-c", "id -un; pwd"], stdout=out))
    assert out.getvalue() == b"app\n/work\n"
    out = io.BytesIO()
    svc.exec_task(cid, ExecTaskRequest(args=["id", "-un"], user="root", stdout=out))
    assert out.getvalue() == b"root\n"


def test_stop_of_a_created_container_is_a_no_op(svc: DockerService, made: list[str],
                                                test_images: dict[str, str]) -> None:
    cid = _create(svc, made, test_images["busybox"], ["true"])
    svc.stop_container(cid, StopTaskOptions(timeout=1))
    assert svc.get_task_info(cid).status == TaskStatus.CREATED
