"""Fixtures of the reliability tests: a private environment of their own, which they may kill.

These tests kill and restart containerd (and dockerd), so they never use the session's shared
environment: each module gets its own, downed at the end whatever happened.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctr_magic.containerd.service import DefaultService
from ctr_magic.daemon import Environment
from ctr_magic.testimages import publish_test_images

# The registry servers and leak checks of the integration tests are reused here.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

from outages import require_host


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    """An environment only this module uses (and kills); downed at module end."""
    require_host()
    environment = Environment(tmp_path_factory.mktemp("reliability-env"))
    try:
        environment.up()
        yield environment
    finally:
        environment.down()


@pytest.fixture(scope="module")
def images(env: Environment, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    assert env.info is not None
    return publish_test_images(env.info.registry_addr, work_dir=tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def namespace() -> str:
    return f"ctr-magic-rel-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def svc(env: Environment, namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DefaultService]:
    assert env.info is not None
    service = DefaultService.connect(env.info.containerd_socket, namespace,
                                     data_dir=str(tmp_path_factory.mktemp("data")))
    try:
        yield service
    finally:
        service.close()
