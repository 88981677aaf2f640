"""The containerd connection against the real private daemon: version, namespaces, plugins."""

import re

import ctr_magic
from ctr_magic.containerd.service import DefaultService
from ctr_magic.env import EnvironmentInfo


def test_version_matches_ctr(service: DefaultService, ctr) -> None:
    ours = service.version()
    out = ctr("version").stdout
    server = out.split("Server:", 1)[1]
    assert re.search(rf"Version:\s+v?{re.escape(ours.version.lstrip('v'))}\b", server)
    assert ours.revision and ours.revision in server
    assert ours.address == service.client.address
    assert service.ping() is True


def test_namespace_travels_on_every_call(environment: EnvironmentInfo, namespace: str, ctr) -> None:
    # A label set through ctr in our namespace is only visible through a client in that namespace.
    ctr("namespaces", "create", namespace, check=False)
    with ctr_magic.connect(socket=environment.containerd_socket, namespace=namespace) as svc:
        assert namespace in svc.namespaces()
    with ctr_magic.connect(socket=environment.containerd_socket, namespace="elsewhere") as other:
        assert other.client.namespace == "elsewhere"
        assert other.client.metadata() == (("containerd-namespace", "elsewhere"),)


def test_plugins_report_overlayfs_and_runc(service: DefaultService) -> None:
    plugins = {(p.type, p.id): p for p in service.plugins()}
    assert plugins[("io.containerd.snapshotter.v1", "overlayfs")].status == "ok"
    assert ("io.containerd.runtime.v2", "task") in plugins
    assert ("io.containerd.grpc.v1", "cri") not in plugins  # our private daemon runs without CRI


def test_connect_defaults_to_env_socket(environment: EnvironmentInfo, monkeypatch) -> None:
    monkeypatch.setenv("CTR_MAGIC_SOCKET", environment.containerd_socket)
    monkeypatch.setenv("CTR_MAGIC_NAMESPACE", "from-env")
    with ctr_magic.connect() as svc:
        assert svc.client.address == environment.containerd_socket
        assert svc.namespace == "from-env"
        assert svc.version().version


def test_delete_namespace(environment: EnvironmentInfo, ctr) -> None:
    import pytest

    from ctr_magic.errors import FailedPrecondition, NotFound

    name = "ctr-magic-test-ns-delete"
    ctr("namespaces", "create", name, namespace=name)
    with ctr_magic.connect(socket=environment.containerd_socket, namespace=name) as svc:
        ctr("namespaces", "label", name, "k=v", namespace=name)
        svc.delete_namespace()
        assert name not in svc.namespaces()
        with pytest.raises(NotFound, match=name):
            svc.delete_namespace()
        # A namespace holding an object is refused, and stays.
        ctr("snapshots", "prepare", "keep", namespace=name)
        with pytest.raises(FailedPrecondition, match=name):
            svc.delete_namespace()
        assert name in svc.namespaces()
        ctr("snapshots", "rm", "keep", namespace=name)
        svc.delete_namespace()


def test_delete_namespace_collects_garbage_of_deleted_images(environment: EnvironmentInfo, test_images, ctr) -> None:
    from ctr_magic.types import DeleteImageOptions

    name = "ctr-magic-test-ns-gc"
    with ctr_magic.connect(socket=environment.containerd_socket, namespace=name) as svc:
        svc.pull_image(test_images["busybox"])
        svc.delete_image(test_images["busybox"], DeleteImageOptions(synchronous=False))
        svc.delete_namespace()  # blobs and snapshots awaiting GC must not make this fail
        assert name not in svc.namespaces()
