"""Pull + unpack of a 4 x 64 MiB incompressible image: ctr-magic vs ``ctr images pull --plain-http``.

Both sides start cold: before every timed run the image is deleted and containerd's GC has removed
its content and snapshots (checked), in one namespace used only by this benchmark. Runs alternate
(ours, ctr, ours, ...) so load drift hits both; the medians are compared.
"""

from __future__ import annotations

import tempfile

from ctr_magic import errors
from ctr_magic.containerd.leases import Lease
from ctr_magic.containerd.pb import content_pb2, content_pb2_grpc, snapshots_pb2, snapshots_pb2_grpc
from ctr_magic.containerd.service import DefaultService
from ctr_magic.containerd.unpack import Unpacker
from ctr_magic.env import EnvironmentInfo, find_binary
from ctr_magic.testimages import large_random_image, publish
from ctr_magic.types import DeleteImageOptions

from .runner import Comparison, interleave, timed
from .runner import run as run_ref

NAMESPACE = "ctr-magic-bench-pull"
REPO = "ctr-magic/bench-large"
LAYERS, LAYER_MIB = 4, 64
REPEAT = 7


def _stored(svc: DefaultService) -> tuple[int, int]:
    """(blobs, snapshots) in the benchmark's namespace."""
    content = svc.client.stub(content_pb2_grpc.ContentStub)
    blobs = sum(len(r.info) for r in svc.client.stream(content.List, content_pb2.ListContentRequest(),
                                                        what="listing content"))
    snaps = svc.client.stub(snapshots_pb2_grpc.SnapshotsStub)
    count = sum(len(r.info) for r in svc.client.stream(
        snaps.List, snapshots_pb2.ListSnapshotsRequest(snapshotter=svc.snapshotter), what="listing snapshots"))
    return blobs, count


def _make_cold(svc: DefaultService, ref: str) -> None:
    try:
        svc.delete_image(ref, DeleteImageOptions(synchronous=True))
    except errors.NotFound:
        lease = Lease(svc.client, "bench-gc").create()
        lease.delete(sync=True)  # a synchronous GC even when there was no image to delete
    left = _stored(svc)
    if left != (0, 0):
        raise RuntimeError(f"benchmark namespace not cold: {left[0]} blobs, {left[1]} snapshots left")


def run(env: EnvironmentInfo) -> list[Comparison]:
    with tempfile.TemporaryDirectory(prefix="ctr-magic-bench-pull-") as work:
        image = large_random_image(work, layers=LAYERS, size_mib=LAYER_MIB, seed=2024)
        publish(image.layout, env.registry_addr, REPO, "latest", src_tag=image.tag)
    ref = f"{env.registry_addr}/{REPO}:latest"
    ctr = [find_binary("ctr"), "--address", env.containerd_socket, "-n", NAMESPACE, "images", "pull",
           "--plain-http", ref]
    svc = DefaultService.connect(env.containerd_socket, NAMESPACE)

    def check_unpacked(who: str) -> None:
        top = svc.images.resolve(ref).top_chain_id
        if not Unpacker(svc.client, svc.snapshotter).exists(top):
            raise RuntimeError(f"{who} did not unpack {ref}")

    def ours() -> float:
        _make_cold(svc, ref)
        elapsed = timed(lambda: svc.pull_image(ref))
        check_unpacked("ctr-magic")
        return elapsed

    def reference() -> float:
        _make_cold(svc, ref)
        elapsed = timed(lambda: run_ref(ctr))
        check_unpacked("ctr")
        return elapsed

    try:
        ours()  # warm-up: imports, connections, page cache of the registry's blobs
        reference()
        mine, theirs = interleave(ours, reference, REPEAT)
    finally:
        _make_cold(svc, ref)
        svc.close()
    size = f"{LAYERS} x {LAYER_MIB} MiB"
    return [Comparison(f"pull + unpack, {size} incompressible, cold", mine, theirs,
                       "ctr images pull", target=1.0,
                       notes=[f"median of {REPEAT} interleaved runs; image removed and GC'd before each"])]
