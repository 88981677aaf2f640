"""dockerd killed and started again: the same DockerService recovers at once, and a call the restart
broke says so."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
from outages import first_success_after, kill_daemon, require_host, wait_for

from ctr_magic import errors
from ctr_magic.daemon import Environment, find_binary
from ctr_magic.docker.service import DockerService

OUTAGE_SECONDS = float(os.environ.get("CTR_MAGIC_OUTAGE_SECONDS", "30"))


@pytest.fixture(scope="module")
def denv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    require_host()
    try:
        find_binary("dockerd")
    except errors.Unavailable as exc:
        pytest.skip(str(exc))
    environment = Environment(tmp_path_factory.mktemp("reliability-dockerd"), with_docker=True)
    try:
        environment.up()
        yield environment
    finally:
        environment.down()


@pytest.fixture(scope="module")
def docker(denv: Environment) -> Iterator[DockerService]:
    assert denv.info is not None and denv.info.dockerd_socket
    service = DockerService.connect(denv.info.dockerd_socket)
    try:
        yield service
    finally:
        service.close()


def _kill_dockerd(env: Environment) -> None:
    info = env.status()
    assert info is not None and info.dockerd_pid
    kill_daemon(info.dockerd_pid, "dockerd")


def test_engine_api_call_broken_by_a_restart_says_so(denv: Environment, docker: DockerService) -> None:
    seen: list[BaseException] = []

    def follow_events() -> None:
        try:
            for _ in docker.events():
                pass
        except BaseException as exc:
            seen.append(exc)

    docker.list_containers()
    worker = threading.Thread(target=follow_events)
    worker.start()
    wait_for(lambda: _has_events_connection(denv), 20, "the events request to reach dockerd")
    _kill_dockerd(denv)
    worker.join(30)
    denv.up()
    assert len(seen) == 1 and isinstance(seen[0], errors.Unavailable), seen
    assert "went away while the call ran" in str(seen[0]) and "reading events" in str(seen[0])


def test_engine_api_recovers_within_a_second_after_a_long_outage(
        denv: Environment, docker: DockerService) -> None:
    docker.list_containers()
    _kill_dockerd(denv)
    seen = []
    deadline_calls = max(1, int(OUTAGE_SECONDS // 2))
    for _ in range(deadline_calls):
        try:
            docker.list_containers()
        except errors.Unavailable as exc:
            seen.append(str(exc))
        threading.Event().wait(2.0)  # a call every 2 s during the outage, as the issue measured
    assert seen and all("cannot reach" in msg for msg in seen), seen[0]
    denv.up()
    recovery = first_success_after(docker.list_containers)
    print(f"\ndockerd: first Engine API call succeeded {recovery * 1000:.0f} ms after a {OUTAGE_SECONDS:g} s outage")
    assert recovery < 1.0, f"first Engine API call succeeded {recovery:.2f}s after dockerd was back"


def _has_events_connection(env: Environment) -> bool:
    """True once a second client connection to dockerd's socket is open (the events request's)."""
    assert env.info is not None and env.info.dockerd_socket
    with open("/proc/net/unix") as fh:
        return sum(1 for line in fh if line.rstrip().endswith(env.info.dockerd_socket)) >= 2


def test_event_stream_resumes_across_a_dockerd_restart(denv: Environment, docker: DockerService,
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    """Before: the /events response just ended when dockerd died; nothing after the restart arrived."""
    import contextlib
    import time

    from ctr_magic.monitoring import RESYNC
    from ctr_magic.testimages import publish_test_images
    from ctr_magic.types import CreateContainerRequest, DeleteContainerOptions

    assert denv.info is not None
    image = publish_test_images(denv.info.registry_addr, work_dir=tmp_path_factory.mktemp("images"))["busybox"]
    docker.pull_image(image)
    cid = f"rel-docker-events-{os.getpid()}"
    stream = docker.container_events()
    try:
        _kill_dockerd(denv)
        denv.up()

        def next_event(wanted: object, timeout: float) -> object:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not stream.ended:
                event = stream.get(timeout=0.5)
                if event is not None and wanted(event):  # type: ignore[operator]
                    return event
            return None

        assert next_event(lambda e: e.action == RESYNC, 60) is not None, f"no resync ({stream.error!r})"
        docker.create_container(CreateContainerRequest(id=cid, image_ref=image))
        created = next_event(lambda e: e.container_id == cid and e.action == "create", 30)
        assert created is not None, f"the create after the restart did not arrive ({stream.error!r})"
    finally:
        stream.close()
        with contextlib.suppress(errors.NotFound):
            docker.delete_container(cid, DeleteContainerOptions(force=True))
