"""Pulls that go wrong: corrupt blobs, a registry that dies, an interrupt, a timeout.

After each: no image record, no lease, no open ingest, no extraction snapshot — and a clean rerun works.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import images_support
import pytest
from images_support import active_ingests, assert_nothing_left, content_digests, gc, snapshots
from registry_servers import PrivateRegistry, TamperingProxy

from ctr_magic import errors, ocilayout, testimages
from ctr_magic.containerd.ingest import BlobCorrupt
from ctr_magic.containerd.leases import Lease, list_leases
from ctr_magic.containerd.service import DefaultService
from ctr_magic.reference import parse_reference
from ctr_magic.registry import RegistryClient, RegistryOptions, parse
from ctr_magic.types import DeleteImageOptions, LayerProgress, PullImageOptions

images_namespace = images_support.images_namespace
svc = images_support.svc

BIG_LAYER_MIB = 24


@pytest.fixture(scope="module")
def big_layout(tmp_path_factory: pytest.TempPathFactory) -> ocilayout.BuiltImage:
    """Busybox plus two layers of incompressible data, big enough to be caught mid-download."""
    return testimages.large_random_image(tmp_path_factory.mktemp("big-image"), layers=2, size_mib=BIG_LAYER_MIB,
                                         seed=7)


@pytest.fixture
def private_registry(tmp_path: Path, big_layout: ocilayout.BuiltImage) -> Iterator[PrivateRegistry]:
    with PrivateRegistry(tmp_path / "registry") as reg:
        testimages.publish(big_layout.layout, reg.addr, "ctr-magic/big", "latest", src_tag=big_layout.tag)
        yield reg


def _big_layers(svc: DefaultService, ref: str) -> list[str]:
    return [layer["digest"] for layer in svc.images.resolve(ref).layers]


def test_corrupt_blob_is_refused_and_nothing_committed(svc: DefaultService, registry: str,
                                                       tmp_path: Path) -> None:
    # An image of this test's own: containerd's content store is shared by namespaces, so a layer
    # another test already pulled would never be downloaded (and never corrupted) here.
    import secrets

    seed = secrets.randbits(32)
    built = testimages.large_random_image(tmp_path / "layout", layers=1, size_mib=1, seed=seed)
    ref = f"{registry}/ctr-magic/corrupt-{seed:08x}:latest"
    testimages.publish(built.layout, registry, f"ctr-magic/corrupt-{seed:08x}", "latest", src_tag=built.tag)
    with TamperingProxy(registry) as proxy:
        proxied = ref.replace(registry, proxy.addr)
        # Learn the layer digests from the registry itself, then corrupt the top layer on the way.
        with RegistryClient(registry) as client:
            raw, desc = client.get_manifest(parse_reference(ref))
            manifest = parse(raw, desc.media_type, ref)
        bad = manifest.layers[-1].digest
        proxy.corrupt.add(bad)
        gc(svc)
        before = content_digests(svc.client)
        with pytest.raises(BlobCorrupt) as err:
            svc.pull_image(proxied)
        assert bad in str(err.value) and "corrupt" in str(err.value)
        assert "\n" not in str(err.value)
        assert bad not in content_digests(svc.client)
        assert_nothing_left(svc, proxied)
        assert bad not in content_digests(svc.client) - before
        proxy.corrupt.clear()
        info = svc.pull_image(proxied)  # the rerun works through the now honest proxy
        assert bad in content_digests(svc.client)
    svc.delete_image(info.name, DeleteImageOptions(synchronous=True))


def test_registry_dies_mid_pull(svc: DefaultService, private_registry: PrivateRegistry) -> None:
    ref = f"{private_registry.addr}/ctr-magic/big:latest"
    svc.registry_options = RegistryOptions(max_attempts=3)
    killed: list[int] = []

    def kill_when_data_flows(event: LayerProgress) -> None:
        if event.state == "downloading" and event.done > 0 and not killed:
            private_registry.kill()
            killed.append(event.done)

    try:
        with pytest.raises(errors.Unavailable) as err:
            svc.pull_image(ref, PullImageOptions(progress=kill_when_data_flows))
        assert killed, "the registry was never caught mid-download"
        assert private_registry.addr in str(err.value)
        assert_nothing_left(svc, ref)
        private_registry.start()  # same port, same storage
        info = svc.pull_image(ref)
        assert info.name == ref
        assert set(_big_layers(svc, ref)) <= content_digests(svc.client)
    finally:
        svc.registry_options = RegistryOptions()
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))


def test_interrupt_mid_pull_then_rerun_reuses_blobs(svc: DefaultService, private_registry: PrivateRegistry) -> None:
    """KeyboardInterrupt from the progress callback: nothing left, and the rerun reuses finished blobs.

    containerd collects unreferenced blobs soon after the pull's lease goes, so the test pins the
    blobs that finished with a lease of its own (as a slower GC would leave them) to see them reused.
    """
    ref = f"{private_registry.addr}/ctr-magic/big:latest"
    pin = Lease(svc.client, "test-pin").create()
    finished: set[str] = set()

    def interrupt(event: LayerProgress) -> None:
        if event.state == "done":
            pin.add_content(event.digest)
            finished.add(event.digest)
        if event.state == "downloading" and event.done >= 4 << 20:
            raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            svc.pull_image(ref, PullImageOptions(progress=interrupt))
        assert finished and finished <= content_digests(svc.client)
        assert [lease.id for lease in list_leases(svc.client)] == [pin.id]
        assert active_ingests(svc.client) == []
        assert not [key for key in snapshots(svc.client) if key.startswith("extract-")]
        assert ref not in [image.name for image in svc.list_images()]
        events: list[LayerProgress] = []
        svc.pull_image(ref, PullImageOptions(progress=events.append))
    finally:
        pin.delete()
    assert finished <= {e.digest for e in events if e.state == "exists"}
    assert svc.images.resolve(ref).top_chain_id in snapshots(svc.client)
    assert_nothing_left(svc)
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))


def test_timeout_mid_pull(svc: DefaultService, private_registry: PrivateRegistry) -> None:
    ref = f"{private_registry.addr}/ctr-magic/big:latest"
    with TamperingProxy(private_registry.addr) as proxy:
        proxy.rate = 2 << 20  # 2 MiB/s: the big layers take far longer than the timeout
        proxied = ref.replace(private_registry.addr, proxy.addr)
        with pytest.raises(errors.Interrupted, match=r"timed out after 1\.5s"):
            svc.pull_image(proxied, PullImageOptions(timeout=1.5))
        assert_nothing_left(svc, proxied)
    assert active_ingests(svc.client) == []


def test_registry_not_running(svc: DefaultService, tmp_path: Path) -> None:
    reg = PrivateRegistry(tmp_path / "never-started")  # a port nobody listens on
    ref = f"{reg.addr}/ctr-magic/busybox:latest"
    svc.registry_options = RegistryOptions(max_attempts=2)
    try:
        with pytest.raises(errors.Unavailable, match=f"cannot reach registry {reg.addr}") as err:
            svc.pull_image(ref)
    finally:
        svc.registry_options = RegistryOptions()
    assert "is it running?" in str(err.value)
    assert_nothing_left(svc, ref)


def test_rerun_holds_already_unpacked_snapshots_in_its_lease(svc: DefaultService, test_images: dict[str, str]) -> None:
    """Snapshots an earlier (interrupted) pull left unreferenced are leased before anything is built on them.

    Without that, garbage collection may remove a lower layer between "it exists, skip it" and preparing
    the next layer on top of it ("parent snapshot ... does not exist").
    """
    from ctr_magic.containerd.imagestore import chain_ids
    from ctr_magic.containerd.pb import images_pb2, images_pb2_grpc, leases_pb2, leases_pb2_grpc

    ref = test_images["layers"]
    svc.pull_image(ref)
    chains = chain_ids(svc.images.resolve(ref).diff_ids)
    # Drop the image record only: its snapshots stay, referenced by nothing (as after an interrupted pull).
    images_stub = svc.client.stub(images_pb2_grpc.ImagesStub)
    svc.client.call(images_stub.Delete, images_pb2.DeleteImageRequest(name=ref), what="dropping the record")
    stub = svc.client.stub(leases_pb2_grpc.LeasesStub)
    held: list[set[str]] = []

    def watch(event: LayerProgress) -> None:
        if event.state == "unpacked" and not held:
            leases = [lease.id for lease in list_leases(svc.client)]
            resources: set[str] = set()
            for lease_id in leases:
                resp = svc.client.call(stub.ListResources, leases_pb2.ListResourcesRequest(id=lease_id), what="ls")
                resources |= {r.id for r in resp.resources if r.type.startswith("snapshots/")}
            held.append(resources)

    try:
        svc.pull_image(ref, PullImageOptions(progress=watch))
        assert held and chains[0] in held[0]
        assert list_leases(svc.client) == []
    finally:
        svc.delete_image(ref, DeleteImageOptions(synchronous=True))
