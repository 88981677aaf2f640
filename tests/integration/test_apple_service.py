"""AppleService on Linux: its socktainer supervisor runs a stand-in (tests/fake_socktainer/socktainer, a
real dockerd on socktainer's socket under a temporary HOME), so start, health check, restart after a
kill, adoption and close all happen for real. Behaviour shared with the other backends is in
tests/conformance.
"""

from __future__ import annotations

import io
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctr_magic import connect, errors
from ctr_magic.apple import AppleService, AppleServiceConfig
from ctr_magic.docker.api import EngineAPI
from ctr_magic.env import EnvironmentInfo, mounts_under, unmount_all
from ctr_magic.types import ContainerSpec, CreateContainerRequest, DeleteContainerOptions, ExecTaskRequest

FAKE_SOCKTAINER = Path(__file__).resolve().parent.parent / "fake_socktainer" / "socktainer"


@pytest.fixture
def home(environment: EnvironmentInfo, tmp_path_factory: pytest.TempPathFactory,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A HOME for socktainer; the stand-in runs its dockerd on the session's containerd.

    Afterwards nothing the stand-in's dockerd mounted under it stays mounted (a killed dockerd
    cannot clean up after itself).
    """
    monkeypatch.setenv("FAKE_SOCKTAINER_CONTAINERD", environment.containerd_socket)
    path = tmp_path_factory.mktemp("apple-home")
    yield path
    unmount_all([path])
    assert not mounts_under([path])


@pytest.fixture
def apple(home: Path) -> Iterator[AppleService]:
    service = AppleService(AppleServiceConfig(binary_path=str(FAKE_SOCKTAINER), home=str(home)))
    try:
        yield service
    finally:
        service.close()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_start_serves_on_the_socket_under_home_and_close_stops_it(home: Path) -> None:
    service = AppleService(AppleServiceConfig(binary_path=str(FAKE_SOCKTAINER), home=str(home)))
    try:
        assert service.config.socket() == str(home / ".socktainer" / "container.sock")
        assert service.socket_path == str(home / ".socktainer" / "container.sock")
        proc = service.supervisor.process
        assert proc is not None and proc.poll() is None
        assert service.ping()
        assert service.version().api_version
    finally:
        service.close()
    assert proc.poll() is not None and _gone(proc.pid)
    with pytest.raises(errors.Unavailable, match="closed"):
        service.list_containers()
    with pytest.raises(errors.Unavailable, match="cannot reach"):
        EngineAPI(service.socket_path).ping()
    service.close()  # harmless twice


def test_a_killed_socktainer_is_restarted_by_the_next_call(apple: AppleService, test_images: dict[str, str]
                                                           ) -> None:
    cid = "apple-survivor"
    apple.create_container(CreateContainerRequest(id=cid, image_ref=test_images["busybox"],
                                                  spec=ContainerSpec(cmd=["true"])))
    try:
        first = apple.supervisor.process
        assert first is not None
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert apple.get_container(cid).id == cid  # this call restarted it
        second = apple.supervisor.process
        assert second is not None and second.pid != first.pid
        assert apple.supervisor.restarts == 1
    finally:
        apple.delete_container(cid, DeleteContainerOptions())


def test_a_running_socktainer_is_adopted_and_left_running(apple: AppleService, home: Path) -> None:
    with AppleService(AppleServiceConfig(binary_path="/nonexistent/socktainer", home=str(home))) as second:
        assert second.supervisor.process is None  # nothing started: the socket already answers
        assert second.list_containers() == apple.list_containers()
    assert apple.supervisor.process is not None and apple.supervisor.process.poll() is None
    assert apple.ping()


def test_connect_entry_point(home: Path) -> None:
    service = connect("apple", binary_path=str(FAKE_SOCKTAINER), home=str(home))
    try:
        assert isinstance(service, AppleService)
        assert service.backend == "apple"
        assert service.ping()
    finally:
        service.close()


def test_default_socket_follows_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert AppleServiceConfig().socket() == str(tmp_path / ".socktainer" / "container.sock")
    assert AppleServiceConfig(socket_path="~/x.sock").socket() == str(tmp_path / "x.sock")


def test_missing_binary_is_unavailable_and_names_it(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(errors.Unavailable, match="/nonexistent/socktainer"):
        AppleService(AppleServiceConfig(binary_path="/nonexistent/socktainer", home=str(home)))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(errors.Unavailable, match="PATH") as info:
        AppleService(AppleServiceConfig(home=str(home)))
    assert "install socktainer" in info.value.hint


def test_a_binary_that_exits_is_reported_with_its_log(home: Path, tmp_path: Path) -> None:
    binary = _script(tmp_path / "socktainer", "echo 'cannot start: broken' >&2; exit 3")
    with pytest.raises(errors.Unavailable, match="status 3") as info:
        AppleService(AppleServiceConfig(binary_path=binary, home=str(home)))
    assert "cannot start: broken" in info.value.hint


def test_a_binary_that_never_serves_times_out_and_is_stopped(home: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    binary = _script(tmp_path / "socktainer", f"echo $$ > {pidfile}; exec sleep 60")
    with pytest.raises(errors.Unavailable, match="did not answer"):
        AppleService(AppleServiceConfig(binary_path=binary, home=str(home), start_timeout=0.5))
    assert _gone(int(pidfile.read_text()))


def test_exec_stream_left_open_after_exit_is_ended(apple: AppleService, test_images: dict[str, str]) -> None:
    # A background child keeps the output stream open after the exec'd shell exits: what some
    # socktainer execs do. Exec inspect says the process ended; the stream is ended after a grace.
    cid = "apple-hang"
    apple.exec_hang_grace = 0.5  # seconds of silence after the exit before the stream is ended
    apple.create_container(CreateContainerRequest(id=cid, image_ref=test_images["busybox"],
                                                  spec=ContainerSpec(cmd=["sleep", "3600"])))
    try:
        apple.start_container(cid)
        out = io.BytesIO()
        results: list[int] = []
        worker = threading.Thread(target=lambda: results.append(apple.exec_task(
            cid, ExecTaskRequest(args=["sh", "-c", "sleep 300 & echo hi"], stdout=out)).exit_code), daemon=True)
        worker.start()
        worker.join(60)
        assert not worker.is_alive(), "exec_task still waiting for a stream the daemon never closed"
        assert results == [0]
        assert out.getvalue() == b"hi\n"

        session = apple.exec_task_streaming(cid, ExecTaskRequest(args=["sh", "-c", "sleep 300 & echo there"]))
        assert session.stdout is not None
        assert session.stdout.read() == b"there\n"
        assert session.wait(timeout=60).exit_code == 0
        session.close()
    finally:
        apple.delete_container(cid, DeleteContainerOptions())
