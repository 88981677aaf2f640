"""One set of scenarios, every backend: containerd, Docker, and Apple (through a Linux stand-in).

The session starts one private environment (containerd + registry + dockerd) under pytest's tmp
dir. Backends:

* ``containerd``: ``DefaultService`` on the environment's containerd, in a namespace of this run;
* ``docker``: ``DockerService`` on the environment's dockerd;
* ``apple``: ``AppleService`` supervising ``tests/fake_socktainer/socktainer``, which runs another
  dockerd (its own data root, containerd namespace and socket under a temporary HOME).

What a backend does differently is declared in ``ctr_magic.capabilities``; tests look it up and
expect the declared behaviour (``NotSupported`` and so on), so nothing is skipped silently.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ctr_magic import capabilities, errors
from ctr_magic.env import Environment, EnvironmentInfo, find_binary, unmount_all
from ctr_magic.testimages import busybox_path, publish_test_images
from ctr_magic.types import (
    ContainerSpec,
    CreateContainerRequest,
    DeleteContainerOptions,
    DeleteTaskOptions,
    StartTaskOptions,
    StopTaskOptions,
)

FAKE_SOCKTAINER = Path(__file__).resolve().parent.parent / "fake_socktainer" / "socktainer"
REQUIRED = ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "docker-registry", "skopeo", "dockerd")
RUN_LABEL = "io.ctr-magic.test/run"
RUN_ID = secrets.token_hex(4)


def _require_host() -> None:
    """Skip (not fail) where the private daemons cannot run at all."""
    if os.geteuid() != 0:
        pytest.skip("conformance tests need root (containerd, dockerd and runc)")
    try:
        for name in REQUIRED:
            find_binary(name)
        busybox_path()
    except errors.Unavailable as exc:
        pytest.skip(str(exc))


@dataclass
class Backend:
    """A connected backend plus what the scenarios need to know about it."""

    name: str
    service: Any
    images: dict[str, str]
    made: list[str] = field(default_factory=list)

    def supports(self, key: str) -> bool:
        return capabilities.supports(self.name, key)

    def new_id(self, *, track: bool = True) -> str:
        """A fresh container id; tracked ids are removed after the test (see the ``be`` fixture)."""
        cid = f"cf-{self.name[:3]}-{secrets.token_hex(5)}"
        if track:
            self.made.append(cid)
        return cid

    def create(self, *, cmd: list[str] | None = None, image: str = "busybox", labels: dict[str, str] | None = None,
               spec: ContainerSpec | None = None, cid: str = "", track: bool = True) -> str:
        cid = cid or self.new_id(track=track)
        spec = spec or ContainerSpec()
        if cmd is not None:
            spec.cmd = cmd
        self.service.create_container(
            CreateContainerRequest(id=cid, image_ref=self.images[image], labels={RUN_LABEL: RUN_ID, **(labels or {})},
                                   spec=spec)
        )
        return cid

    def run(self, cmd: list[str] | None = None, **kwargs: Any) -> str:
        """Create and start a container (default: ``sleep`` as pid 1)."""
        cid = self.create(cmd=cmd or ["sleep", "3600"], **kwargs)
        self.service.start_container(cid, StartTaskOptions())
        return cid

    def remove(self, cid: str) -> None:
        """Best-effort cleanup of one container, whatever state it is in."""
        svc = self.service
        with contextlib.suppress(errors.CtrError):
            svc.stop_container(cid, StopTaskOptions(timeout=0, force=True))
        with contextlib.suppress(errors.CtrError):
            svc.delete_task(cid, DeleteTaskOptions(force=True))
        with contextlib.suppress(errors.CtrError):
            svc.delete_container(cid, DeleteContainerOptions(cleanup_snapshot=True, force=True))


@pytest.fixture(scope="session")
def conformance_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvironmentInfo]:
    _require_host()
    env = Environment(tmp_path_factory.mktemp("conformance-env"), with_docker=True)
    try:
        yield env.up()
    finally:
        env.down()


@pytest.fixture(scope="session")
def conformance_images(conformance_env: EnvironmentInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return publish_test_images(conformance_env.registry_addr, work_dir=tmp_path_factory.mktemp("conformance-images"))


def _connect(name: str, info: EnvironmentInfo, home: Path) -> Any:
    if name == capabilities.BACKEND_CONTAINERD:
        from ctr_magic.containerd.service import DefaultService

        return DefaultService.connect(info.containerd_socket, f"ctr-magic-conformance-{RUN_ID}")
    if name == capabilities.BACKEND_DOCKER:
        from ctr_magic.docker.service import DockerService

        assert info.dockerd_socket, "the environment has no dockerd"
        return DockerService.connect(info.dockerd_socket)
    from ctr_magic.apple import AppleService, AppleServiceConfig

    return AppleService(AppleServiceConfig(binary_path=str(FAKE_SOCKTAINER), home=str(home)))


@pytest.fixture(scope="session", params=capabilities.BACKENDS)
def backend(
    request: pytest.FixtureRequest,
    conformance_env: EnvironmentInfo,
    conformance_images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Backend]:
    name = request.param
    home = tmp_path_factory.mktemp(f"{name}-home")
    with pytest.MonkeyPatch.context() as mp:
        # The stand-in socktainer runs its dockerd on the environment's containerd.
        mp.setenv("FAKE_SOCKTAINER_CONTAINERD", conformance_env.containerd_socket)
        service = _connect(name, conformance_env, home)
        be = Backend(name, service, conformance_images)
        try:
            yield be
        finally:
            try:
                for cid in be.made:
                    be.remove(cid)
            finally:
                service.close()
                unmount_all([home])  # what the stand-in's dockerd may have left mounted


@pytest.fixture
def be(backend: Backend) -> Iterator[Backend]:
    """The backend, for one test: containers it creates are removed afterwards, even when it fails."""
    start = len(backend.made)
    yield backend
    for cid in backend.made[start:]:
        backend.remove(cid)
    del backend.made[start:]


@pytest.fixture(scope="session")
def box(backend: Backend) -> Iterator[str]:
    """A running busybox container shared by the exec scenarios of one backend."""
    cid = backend.run(labels={"role": "box"}, track=False)
    try:
        yield cid
    finally:
        backend.remove(cid)
