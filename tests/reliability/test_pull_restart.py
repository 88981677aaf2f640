"""A pull in flight when containerd is killed: it fails cleanly, nothing is registered, the rerun works."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from images_support import active_ingests, image_names, snapshots
from outages import kill_containerd, restart
from registry_servers import TamperingProxy

from ctr_magic import errors, testimages
from ctr_magic.containerd.leases import list_leases
from ctr_magic.containerd.service import DefaultService
from ctr_magic.daemon import Environment
from ctr_magic.types import DeleteImageOptions, LayerProgress, PullImageOptions

OUTAGE_SECONDS = 3.0


@pytest.fixture(scope="module")
def big_ref(env: Environment, tmp_path_factory: pytest.TempPathFactory) -> str:
    assert env.info is not None
    built = testimages.large_random_image(tmp_path_factory.mktemp("big"), layers=2, size_mib=12, seed=14)
    testimages.publish(built.layout, env.info.registry_addr, "ctr-magic/rel-big", "latest", src_tag=built.tag)
    return f"{env.info.registry_addr}/ctr-magic/rel-big:latest"


@pytest.fixture
def slow_ref(env: Environment, big_ref: str) -> Iterator[str]:
    assert env.info is not None
    with TamperingProxy(env.info.registry_addr) as proxy:
        proxy.rate = 6 << 20
        yield big_ref.replace(env.info.registry_addr, proxy.addr)


def test_pull_across_a_containerd_restart_fails_cleanly_and_reruns(
        env: Environment, svc: DefaultService, slow_ref: str) -> None:
    restarted: list[threading.Timer] = []

    def crash_mid_download(event: LayerProgress) -> None:
        if event.state == "downloading" and event.done >= 2 << 20 and not restarted:
            kill_containerd(env)
            worker = threading.Timer(OUTAGE_SECONDS, restart, args=(env,))  # the outage the pull sees
            worker.start()
            restarted.append(worker)

    try:
        with pytest.raises(errors.Unavailable, match="containerd"):
            svc.pull_image(slow_ref, PullImageOptions(progress=crash_mid_download))
        assert restarted, "containerd was never killed mid-download"
        restarted[0].join(60)
        # Cleaned up after containerd came back: no lease, no ingest, no image, no extraction snapshot.
        assert [lease.id for lease in list_leases(svc.client)] == []
        assert active_ingests(svc.client) == []
        assert slow_ref not in image_names(svc.client)
        assert not [key for key in snapshots(svc.client) if key.startswith("extract-")]
        info = svc.pull_image(slow_ref)
        assert info.name == slow_ref
    finally:
        for worker in restarted:
            worker.join(60)
    svc.delete_image(slow_ref, DeleteImageOptions(synchronous=True))
