"""A registry that stalls, cuts the connection mid-blob, or trickles: clear errors, resumes, progress.

The registry is Debian's docker-registry behind a TamperingProxy, both on 127.0.0.1 (started here).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import images_support
import pytest
from images_support import active_ingests, assert_nothing_left
from registry_servers import PrivateRegistry, TamperingProxy

from ctr_magic import errors, testimages
from ctr_magic.containerd.service import DefaultService
from ctr_magic.ocilayout import BuiltImage
from ctr_magic.reference import parse_reference
from ctr_magic.registry import RegistryClient, RegistryOptions, parse
from ctr_magic.types import LayerProgress, PullImageOptions

images_namespace = images_support.images_namespace
svc = images_support.svc

LAYER_MIB = 3  # under the 4 MiB chunk the blob reader gathers: the size that showed no progress


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    return testimages.large_random_image(tmp_path_factory.mktemp("stall-image"), layers=1, size_mib=LAYER_MIB,
                                         seed=14)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, layout: BuiltImage) -> Iterator[PrivateRegistry]:
    with PrivateRegistry(tmp_path_factory.mktemp("stall-registry")) as reg:
        testimages.publish(layout.layout, reg.addr, "ctr-magic/stall", "latest", src_tag=layout.tag)
        yield reg


@pytest.fixture
def proxy(registry: PrivateRegistry) -> Iterator[TamperingProxy]:
    with TamperingProxy(registry.addr) as tampering:
        yield tampering


def _biggest_layer(proxy: TamperingProxy) -> tuple[RegistryClient, object]:
    client = RegistryClient(proxy.addr, RegistryOptions(stall_timeout=2.0))
    ref = parse_reference(f"{proxy.addr}/ctr-magic/stall:latest")
    raw, desc = client.get_manifest(ref)
    manifest = parse(raw, desc.media_type, "stall image")
    return client, max(manifest.layers, key=lambda layer: layer.size)


def test_stalled_blob_fails_naming_blob_and_registry(proxy: TamperingProxy) -> None:
    proxy.stall_after = 1 << 20
    client, layer = _biggest_layer(proxy)
    started = time.monotonic()
    with client, pytest.raises(errors.Unavailable) as caught:
        client.read_blob("ctr-magic/stall", layer)
    message = str(caught.value)
    # Before: no stall timeout; the read waited 60 s per try (4 tries) and then said "broke after".
    assert "sent no byte for 2s" in message and layer.digest in message and proxy.addr in message
    assert time.monotonic() - started < 30


def test_stalled_pull_leaves_nothing_and_names_the_blob(svc: DefaultService, proxy: TamperingProxy) -> None:
    proxy.stall_after = 1 << 20
    ref = f"{proxy.addr}/ctr-magic/stall:latest"
    saved = svc.registry_options
    svc.registry_options = RegistryOptions(stall_timeout=2.0)
    try:
        with pytest.raises(errors.Unavailable, match=r"sent no byte for 2s"):
            svc.pull_image(ref)
    finally:
        svc.registry_options = saved
    assert_nothing_left(svc, ref)
    assert active_ingests(svc.client) == []


def test_cut_connection_resumes_with_range(proxy: TamperingProxy) -> None:
    proxy.cut_after = 2 << 20
    client, layer = _biggest_layer(proxy)
    with client:
        data = client.read_blob("ctr-magic/stall", layer)
    assert len(data) == layer.size
    ranges = [header for digest, header in proxy.ranges if digest == layer.digest]
    # Before: the bytes gathered before the cut were dropped: no Range, the blob started again.
    assert len(ranges) == 2 and ranges[0] == "", ranges
    assert ranges[1].startswith("bytes=") and int(ranges[1][6:].rstrip("-")) >= 1 << 20, ranges


def test_progress_moves_for_a_small_slow_blob(svc: DefaultService, proxy: TamperingProxy) -> None:
    proxy.rate = 1 << 20  # 1 MiB/s: the 3 MiB layer takes about 3 s
    ref = f"{proxy.addr}/ctr-magic/stall:latest"
    events: list[LayerProgress] = []
    svc.pull_image(ref, PullImageOptions(progress=events.append, unpack=False))
    try:
        biggest = max((e for e in events if e.total), key=lambda e: e.total)
        partial = {e.done for e in events if e.digest == biggest.digest and e.state == "downloading"
                   and 0 < e.done < e.total}
        # Before: a blob under 4 MiB reported 0 until it was done.
        assert len(partial) >= 2, sorted(partial)
    finally:
        svc.delete_image(ref)
