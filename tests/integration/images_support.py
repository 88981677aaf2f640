"""Shared fixtures and checks for the image tests (test_images*.py).

Each image test module works in a namespace of its own (derived from the session's), so garbage
collection checks see only that module's content; teardown deletes everything the module left.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

import pytest

from ctr_magic import errors
from ctr_magic.containerd.client import ContainerdClient
from ctr_magic.containerd.leases import list_leases
from ctr_magic.containerd.pb import (
    content_pb2,
    content_pb2_grpc,
    images_pb2,
    images_pb2_grpc,
    namespace_pb2,
    namespace_pb2_grpc,
    snapshots_pb2,
    snapshots_pb2_grpc,
)
from ctr_magic.containerd.service import DefaultService
from ctr_magic.env import EnvironmentInfo, find_binary

SNAPSHOTTER = "overlayfs"


def content_digests(client: ContainerdClient) -> set[str]:
    stub = client.stub(content_pb2_grpc.ContentStub)
    out = set()
    for resp in client.stream(stub.List, content_pb2.ListContentRequest(), what="listing content"):
        out.update(info.digest for info in resp.info)
    return out


def content_labels(client: ContainerdClient, digest: str) -> dict[str, str]:
    stub = client.stub(content_pb2_grpc.ContentStub)
    return dict(client.call(stub.Info, content_pb2.InfoRequest(digest=digest), what="content info").info.labels)


def snapshots(client: ContainerdClient, snapshotter: str = SNAPSHOTTER) -> dict[str, snapshots_pb2.Info]:
    stub = client.stub(snapshots_pb2_grpc.SnapshotsStub)
    out = {}
    for resp in client.stream(stub.List, snapshots_pb2.ListSnapshotsRequest(snapshotter=snapshotter),
                              what="listing snapshots"):
        out.update({info.name: info for info in resp.info})
    return out


def active_ingests(client: ContainerdClient) -> list[str]:
    stub = client.stub(content_pb2_grpc.ContentStub)
    resp = client.call(stub.ListStatuses, content_pb2.ListStatusesRequest(), what="listing ingests")
    return [status.ref for status in resp.statuses]


def image_names(client: ContainerdClient) -> set[str]:
    stub = client.stub(images_pb2_grpc.ImagesStub)
    return {img.name for img in client.call(stub.List, images_pb2.ListImagesRequest(), what="images").images}


def assert_nothing_left(svc: DefaultService, name: str = "") -> None:
    """After a failed operation: no lease, no open ingest, no extraction snapshot, and no image *name*."""
    client = svc.client
    assert [lease.id for lease in list_leases(client)] == []
    assert active_ingests(client) == []
    assert [key for key in snapshots(client) if key.startswith("extract-")] == []
    if name:
        assert name not in image_names(client)


def gc(svc: DefaultService) -> None:
    """Run containerd's garbage collector now (deleting a throw-away lease with sync=True does that)."""
    from ctr_magic.containerd.leases import Lease

    lease = Lease(svc.client, "gc").create()
    lease.delete(sync=True)


def wipe_namespace(client: ContainerdClient) -> None:
    """Delete every image, snapshot, blob and lease of the client's namespace, then the namespace."""
    images = client.stub(images_pb2_grpc.ImagesStub)
    for name in image_names(client):
        client.call(images.Delete, images_pb2.DeleteImageRequest(name=name), what=f"deleting {name}")
    for lease in list_leases(client):
        from ctr_magic.containerd.pb import leases_pb2, leases_pb2_grpc

        client.call(client.stub(leases_pb2_grpc.LeasesStub).Delete, leases_pb2.DeleteRequest(id=lease.id),
                    what="deleting lease")
    snaps = client.stub(snapshots_pb2_grpc.SnapshotsStub)
    for _ in range(64):
        infos = snapshots(client)
        if not infos:
            break
        parents = {info.parent for info in infos.values()}
        for name in [n for n in infos if n not in parents]:
            # Gone already, or GC is busy with it: the next round sees.
            with contextlib.suppress(errors.NotFound, errors.FailedPrecondition):
                client.call(snaps.Remove, snapshots_pb2.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=name),
                            what=f"removing snapshot {name}")
    content = client.stub(content_pb2_grpc.ContentStub)
    for digest in content_digests(client):
        with contextlib.suppress(errors.NotFound):
            client.call(content.Delete, content_pb2.DeleteContentRequest(digest=digest), what="deleting content")
    namespaces = client.stub(namespace_pb2_grpc.NamespacesStub)
    with contextlib.suppress(errors.CtrError):
        client.call(namespaces.Delete, namespace_pb2.DeleteNamespaceRequest(name=client.namespace),
                    what=f"deleting namespace {client.namespace}")


@pytest.fixture(scope="module")
def images_namespace(namespace: str, request: pytest.FixtureRequest) -> str:
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_images").strip("_") or "main"
    return f"{namespace}-img-{module}"


@pytest.fixture(scope="module")
def svc(environment: EnvironmentInfo, images_namespace: str) -> Iterator[DefaultService]:
    service = DefaultService.connect(environment.containerd_socket, images_namespace)
    try:
        yield service
    finally:
        try:
            wipe_namespace(service.client)
        finally:
            service.close()


def ctr_cmd(environment: EnvironmentInfo, namespace: str, *args: str, timeout: float = 120.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [find_binary("ctr"), "--address", environment.containerd_socket, "--namespace", namespace, *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {res.returncode}: {res.stderr.strip()}")
    return res
