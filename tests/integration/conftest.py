"""Fixtures for integration tests: a private containerd + registry per test session.

Every environment lives under pytest's tmp dir (its sockets under /run/ctr-magic/<hash>/), so a
user's own ``ctr-magic up`` (under $CTR_MAGIC_HOME) is never touched.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from images_support import ctr_cmd

from ctr_magic import errors
from ctr_magic.env import Environment, EnvironmentInfo, find_binary
from ctr_magic.testimages import busybox_path, publish_test_images

if TYPE_CHECKING:
    from ctr_magic.containerd.service import DefaultService

REQUIRED_BINARIES = ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "docker-registry", "skopeo")


def _require_host() -> None:
    """Skip (not fail) where the private environment cannot run at all."""
    if os.geteuid() != 0:
        pytest.skip("integration tests need root (containerd and runc)")
    try:
        for name in REQUIRED_BINARIES:
            find_binary(name)
        busybox_path()
    except errors.Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvironmentInfo]:
    """The session's running environment (containerd + registry); stopped at session end."""
    _require_host()
    env = Environment(tmp_path_factory.mktemp("ctr-magic-env"))
    try:
        yield env.up()
    finally:
        env.down()


@pytest.fixture(scope="session")
def containerd_socket(environment: EnvironmentInfo) -> str:
    return environment.containerd_socket


@pytest.fixture(scope="session")
def registry(environment: EnvironmentInfo) -> str:
    """``127.0.0.1:PORT`` of the session's plain-HTTP registry."""
    return environment.registry_addr


@pytest.fixture(scope="session")
def test_images(registry: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """name -> reference of the standard images: busybox, layers (5), config, multi (index)."""
    return publish_test_images(registry, work_dir=tmp_path_factory.mktemp("test-images"))


@pytest.fixture(scope="session")
def namespace() -> str:
    """A containerd namespace unique to this test run."""
    return f"ctr-magic-test-{secrets.token_hex(4)}"


@pytest.fixture
def unique_id() -> str:
    """A fresh container id."""
    return f"t-{secrets.token_hex(6)}"


CtrRunner = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="session")
def ctr(environment: EnvironmentInfo, namespace: str) -> CtrRunner:
    """Run the ``ctr`` CLI against the session environment (in ``namespace`` unless told otherwise).

    ``ctr("images", "ls", namespace=..., check=True, timeout=120)`` returns the CompletedProcess.
    """
    def run(
        *args: str, namespace: str = namespace, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        return ctr_cmd(environment, namespace, *args, timeout=timeout, check=check)

    return run


@pytest.fixture
def make_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Environment]]:
    """Factory for extra, throw-away environments (each with its own base dir), downed at teardown."""
    _require_host()
    made: list[Environment] = []

    def make(**kwargs: object) -> Environment:
        env = Environment(tmp_path_factory.mktemp("ctr-magic-extra"), **kwargs)  # type: ignore[arg-type]
        made.append(env)
        return env

    yield make
    for env in made:
        env.down()


@pytest.fixture(scope="module")
def dockerd(environment: EnvironmentInfo) -> EnvironmentInfo:
    """The session environment with its private dockerd started (stopped by the environment's down())."""
    info = Environment(environment.base_dir).up(with_docker=True)
    assert info.dockerd_socket
    return info


@pytest.fixture(scope="session")
def service(environment: EnvironmentInfo, namespace: str) -> Iterator[DefaultService]:
    """A DefaultService on the session environment, in the run's own namespace."""
    from ctr_magic.containerd.service import DefaultService

    svc = DefaultService.connect(environment.containerd_socket, namespace)
    try:
        yield svc
    finally:
        svc.close()
