"""Resource limits without a daemon: parsing, the OCI spec parts (v1 and v2) and Docker's HostConfig."""

from __future__ import annotations

import pytest

from ctr_magic.containerd.resources import apply_limits, linux_resources, oom_kills, shares_to_weight
from ctr_magic.containerd.spec import build_spec
from ctr_magic.docker.limits import host_config, update_body
from ctr_magic.errors import InvalidArgument
from ctr_magic.limits import ResourceLimits, Ulimit, human_bytes, oom_message, parse_size, parse_swap, parse_ulimit
from ctr_magic.types import ContainerSpec

BUSYBOX_CONFIG = {"Cmd": ["sh"]}


@pytest.mark.parametrize(("text", "size"), [("512m", 512 << 20), ("1g", 1 << 30), ("64MiB", 64 << 20),
                                            ("1.5G", 3 << 29), ("4096", 4096), ("16k", 16384), ("2 MB", 2 << 20)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_bad_values_are_one_line_errors() -> None:
    for bad in ("", "lots", "-5m", "1x"):
        with pytest.raises(InvalidArgument, match="is not a size"):
            parse_size(bad)
    assert parse_swap("-1") == -1
    assert parse_ulimit("nofile=10:20") == Ulimit("nofile", 10, 20) and parse_ulimit("nproc=5").hard == 5
    for bad, words in [("nofile", "NAME=SOFT"), ("bogus=1", "NAME=SOFT"), ("nofile=a", "whole numbers"),
                       ("nofile=5:2", "above the hard")]:
        with pytest.raises(InvalidArgument, match=words):
            parse_ulimit(bad)
    with pytest.raises(InvalidArgument, match="minimum of 6 MiB"):
        ResourceLimits(memory=1 << 20).check()
    with pytest.raises(InvalidArgument, match="needs --memory"):
        ResourceLimits(memory_swap=1 << 30).check()


def test_oom_line() -> None:
    assert oom_message(64 << 20) == "killed: out of memory (limit 64 MiB)"
    assert oom_message(0) == "killed: out of memory"
    assert human_bytes(3 << 29) == "1.5 GiB"


def test_v1_spec_has_no_unified_block() -> None:
    limits = ResourceLimits(memory=64 << 20, cpus=1.5, cpu_shares=512, pids_limit=10)
    assert linux_resources(limits, v2=False) == {
        "memory": {"limit": 64 << 20, "swap": 128 << 20},
        "cpu": {"quota": 150000, "period": 100000, "shares": 512},
        "pids": {"limit": 10},
    }


def test_v2_spec_writes_unified_too() -> None:
    limits = ResourceLimits(memory=64 << 20, memory_swap=-1, cpus=0.5, cpu_shares=1024, pids_limit=10)
    unified = linux_resources(limits, v2=True)["unified"]
    assert unified == {"memory.max": str(64 << 20), "memory.swap.max": "max", "cpu.max": "50000 100000",
                       "cpu.weight": str(shares_to_weight(1024)), "pids.max": "10"}
    assert shares_to_weight(2) == 1 and shares_to_weight(262144) == 10000


def test_full_spec_with_every_limit() -> None:
    limits = ResourceLimits(memory=64 << 20, cpus=0.5, shm_size=16 << 20, ulimits=[Ulimit("nofile", 512, 1024)],
                            read_only=True)
    spec = build_spec(namespace="ns", container_id="box", image_config=BUSYBOX_CONFIG,
                      container_spec=ContainerSpec(limits=limits))
    resources = spec["linux"]["resources"]
    assert resources["devices"][0] == {"allow": False, "access": "rwm"}  # the defaults stay
    assert resources["memory"]["limit"] == 64 << 20 and resources["cpu"]["quota"] == 50000
    assert spec["root"]["readonly"] is True
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}]
    shm = next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")
    assert "size=16384k" in shm["options"] and "size=65536k" not in shm["options"]
    assert any(m["destination"] == "/sys/fs/cgroup" and m["type"] == "cgroup" for m in spec["mounts"])
    plain = build_spec(namespace="ns", container_id="box", image_config=BUSYBOX_CONFIG)
    assert "memory" not in plain["linux"]["resources"]
    assert not any(m["destination"] == "/sys/fs/cgroup" for m in plain["mounts"])
    with pytest.raises(InvalidArgument, match="minimum"):
        apply_limits(plain, ResourceLimits(memory=1024))


def test_docker_host_config() -> None:
    limits = ResourceLimits(memory=64 << 20, cpus=1.5, cpu_shares=512, pids_limit=10, shm_size=1 << 20,
                            ulimits=[Ulimit("nofile", 5, 6)], read_only=True)
    assert host_config(limits) == {"Memory": 64 << 20, "MemorySwap": 128 << 20, "NanoCpus": 1_500_000_000,
                                   "CpuShares": 512, "PidsLimit": 10, "ShmSize": 1 << 20,
                                   "Ulimits": [{"Name": "nofile", "Soft": 5, "Hard": 6}], "ReadonlyRootfs": True}
    assert host_config(ResourceLimits()) == {}
    assert update_body(ResourceLimits(cpus=0.5)) == {"NanoCpus": 500_000_000}
    with pytest.raises(InvalidArgument, match="apply at create"):
        update_body(ResourceLimits(shm_size=1 << 20))


def test_oom_kills_reads_v1_and_v2_files(tmp_path: pytest.TempPathFactory) -> None:
    v1 = tmp_path / "v1"  # type: ignore[operator]
    (v1 / "memory" / "ns" / "box").mkdir(parents=True)
    (v1 / "memory" / "ns" / "box" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert oom_kills("/ns/box", str(v1)) == 2
    v2 = tmp_path / "v2"  # type: ignore[operator]
    (v2 / "ns" / "box").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("memory\n")
    (v2 / "ns" / "box" / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    assert oom_kills("/ns/box", str(v2)) == 1
    assert oom_kills("/ns/gone", str(v2)) is None
