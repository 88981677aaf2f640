"""Fixtures for the swarm tests: one local 3-node cluster per test session, its images, a shell.

The cluster (``SwarmCluster``) lives under pytest's temporary directory with its own bridge,
namespaces and registry; it is removed at the end of the session, and the teardown checks that
nothing of it is left (namespace, link, process, mount).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from swarm_support import leftovers

from ctr_magic import errors
from ctr_magic.swarm.cluster import ClusterInfo, SwarmCluster
from ctr_magic.swarm.service import SwarmService
from ctr_magic.testimages import busybox_path, busybox_single_layer, busybox_with_config, publish

NODES = 3
REQUIRED = ("dockerd", "docker-registry", "skopeo", "nsenter", "unshare", "ip")


def _require_host() -> None:
    if os.geteuid() != 0:
        pytest.skip("the swarm tests need root (network namespaces, dockerd)")
    for name in REQUIRED:
        if shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            pytest.skip(f"{name} is not installed")
    try:
        busybox_path()
    except errors.Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def swarm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmCluster]:
    """The session's cluster of 3 nodes (node1 manager, node2 and node3 workers)."""
    _require_host()
    cluster = SwarmCluster(tmp_path_factory.mktemp("swarm"))
    info = cluster.up(NODES)
    try:
        yield cluster
    finally:
        cluster.down()
        left = leftovers(info)
        assert not left, f"the cluster left: {left}"


@pytest.fixture(scope="session")
def swarm_info(swarm_cluster: SwarmCluster) -> ClusterInfo:
    info = swarm_cluster.status()
    assert info is not None
    return info


@pytest.fixture(scope="session")
def swarm_images(swarm_info: ClusterInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two busybox images in the cluster's registry: ``busybox`` and ``config`` (another digest)."""
    layout = tmp_path_factory.mktemp("swarm-images")
    refs = {}
    for name, build in (("busybox", busybox_single_layer), ("config", busybox_with_config)):
        image = build(layout, tag=name)
        publish(image.layout, swarm_info.registry_addr, f"ctr-magic/{name}", "latest", src_tag=image.tag)
        refs[name] = f"{swarm_info.registry_addr}/ctr-magic/{name}:latest"
    return refs


@pytest.fixture(scope="session")
def swarm(swarm_info: ClusterInfo) -> Iterator[SwarmService]:
    svc = SwarmService.connect(swarm_info.manager_socket)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def service_name(swarm: SwarmService) -> Iterator[str]:
    """A fresh service name; the service (if made) is removed after the test, even when it failed."""
    name = f"t-{secrets.token_hex(4)}"
    yield name
    with contextlib.suppress(errors.NotFound):
        swarm.remove_service(name)


@pytest.fixture
def shell(swarm_info: ClusterInfo, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An IPython shell with ctr_magic loaded, using the cluster's manager."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.chdir(tmp_path)
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "ctr_magic")
    ip.run_line_magic("config", "CtrMagic.progress = 'none'")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "ctr_magic")
        ip.config.pop("CtrMagic", None)
