"""Resource limits on containerd and Docker, seen where they act: the cgroup files inside the container,
the OOM killer, the CPU time a busy loop gets, and %ctr update on a running container."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pycell_support import BACKENDS, Backend, failure_line, magic_shell, make_backend, ok, run_cell

from ctr_magic import errors
from ctr_magic.limits import ResourceLimits


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, environment: Any, namespace: str) -> Iterator[Backend]:
    yield from make_backend(request.param, environment, namespace)


@pytest.fixture
def shell(backend: Backend, environment: Any, monkeypatch: pytest.MonkeyPatch,
          test_images: dict[str, str]) -> Iterator[Any]:
    with magic_shell(backend, environment.base_dir, monkeypatch) as ip:
        ip.user_ns["BUSYBOX"] = test_images["busybox"]
        yield ip


def read_in(shell: Any, container_id: str, *paths: str) -> list[str]:
    ok(shell, f"%ctr exec -o _limits {container_id} -- cat {' '.join(paths)}")
    return shell.user_ns["_limits"].split()


MEMORY = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
SWAP = "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
QUOTA = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"
SHARES = "/sys/fs/cgroup/cpu/cpu.shares"
PIDS = "/sys/fs/cgroup/pids/pids.max"


def test_cgroup_files_inside_show_the_limits(shell: Any, backend: Backend) -> None:
    name = f"limited-{backend.name}"
    ok(shell, f"%ctr run -d --name {name} --memory 64m --memory-swap 96m --cpus 0.5 --cpu-shares 512 "
              "--pids-limit 50 --shm-size 16m --ulimit nofile=512:1024 --read-only $BUSYBOX -- sleep 600")
    assert read_in(shell, name, MEMORY, SWAP, QUOTA, SHARES, PIDS) == [
        str(64 << 20), str(96 << 20), "50000", "512", "50"]
    ok(shell, f"%ctr exec -o _shm {name} -- df -k /dev/shm")
    assert shell.user_ns["_shm"].splitlines()[1].split()[1] == "16384"
    # The container's own process: runc 1.1 applies an exec's rlimits racily (an exec sometimes keeps 1024).
    ok(shell, f"%ctr exec -o _files {name} -- grep 'open files' /proc/1/limits")
    assert shell.user_ns["_files"].split()[3:5] == ["512", "1024"]
    result, _, err = run_cell(shell, f"%ctr exec {name} -- touch /written")
    assert result.success and "Read-only file system" in err

    ok(shell, f"%ctr update {name} --memory 32m --memory-swap 48m --cpus 0.25 --pids-limit 20")
    assert read_in(shell, name, MEMORY, SWAP, QUOTA, PIDS) == [str(32 << 20), str(48 << 20), "25000", "20"]


def test_memory_past_the_limit_is_oom_killed_and_reported(shell: Any, backend: Backend) -> None:
    # dd reads 64 MiB of zeros into one buffer: every page is touched, past the 16 MiB limit.
    result, out, err = run_cell(shell, f"%ctr run --rm --name oom-{backend.name} --memory 16m $BUSYBOX -- "
                                       "dd if=/dev/zero of=/dev/null bs=64M count=1")
    assert result.success, out + err
    assert f"oom-{backend.name} killed: out of memory (limit 16 MiB), exit code 137" in err
    result, out, _ = run_cell(shell, "%ctr run --rm --check --memory 16m $BUSYBOX -- "
                                     "dd if=/dev/zero of=/dev/null bs=64M count=1")
    assert "killed: out of memory (limit 16 MiB), exit code 137" in failure_line(result, out)
    assert result.error_in_exec.exit_code == 137
    result, out, err = run_cell(shell, "%ctr run --rm --memory 16m $BUSYBOX -- sh -c 'exit 137'")
    assert "exited with code 137" in err and "out of memory" not in err  # a 137 that was no OOM kill


def cpuacct_usage_file(backend: Backend, container_id: str) -> str:
    """The host's cpuacct.usage of the container's cgroup, found from its init process.

    Read on the host: an exec into a container held to half a CPU by a busy loop is itself throttled.
    """
    pid = backend.service.get_task_info(container_id).pid
    with open(f"/proc/{pid}/cgroup") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "cpuacct" in controllers.split(","):
                return f"/sys/fs/cgroup/{controllers}{path}/cpuacct.usage"
    raise AssertionError(f"no cpuacct cgroup for pid {pid}")


def _cpu_seconds(path: str) -> float:
    with open(path) as fh:
        return int(fh.read()) / 1e9


def test_half_a_cpu_holds_a_busy_loop_near_half(shell: Any, backend: Backend) -> None:
    """Next to an unlimited busy loop measured at the same time: on a machine too busy to give even that
    one half a CPU, "near 50 %" cannot be seen, but the limited loop must still stay at or below it."""
    loop = "sh -c 'while :; do :; done'"
    ok(shell, f"%ctr run -d --name busy-{backend.name} --cpus 0.5 $BUSYBOX -- {loop}")
    ok(shell, f"%ctr run -d --name free-{backend.name} $BUSYBOX -- {loop}")
    files = [cpuacct_usage_file(backend, f"{kind}-{backend.name}") for kind in ("busy", "free")]
    first, started = [_cpu_seconds(f) for f in files], time.monotonic()
    while time.monotonic() - started < 4.0:  # poll the usage counters over a few CFS periods
        used = [_cpu_seconds(f) - f0 for f, f0 in zip(files, first, strict=True)]
        time.sleep(0.1)
    limited, free = (u / (time.monotonic() - started) for u in used)
    print(f"{backend.name}: --cpus 0.5 busy loop used {limited:.2f} CPU, an unlimited one {free:.2f}")
    assert limited <= 0.65
    assert limited >= min(0.35, 0.7 * free)


def test_bad_limits_change_nothing(shell: Any, backend: Backend) -> None:
    before = {c.id for c in backend.service.list_containers()}
    for line, words in [
        ("--memory 1k", "below the minimum of 6 MiB"),
        ("--memory lots", "--memory 'lots' is not a size"),
        ("--memory 64m --memory-swap 32m", "is below --memory"),
        ("--ulimit files=3", "is not NAME=SOFT[:HARD]"),
        ("--cpus -1", "must be above 0"),
    ]:
        result, out, _ = run_cell(shell, f"%ctr run --rm {line} $BUSYBOX -- true")
        assert words in failure_line(result, out, errors.InvalidArgument), line
    assert {c.id for c in backend.service.list_containers()} == before
    ok(shell, f"%ctr run -d --name upd-{backend.name} $BUSYBOX -- sleep 600")
    result, out, _ = run_cell(shell, f"%ctr update upd-{backend.name}")
    assert "nothing to update" in failure_line(result, out, errors.InvalidArgument)
    with pytest.raises(errors.InvalidArgument, match="apply at create"):
        backend.service.update_container(f"upd-{backend.name}", ResourceLimits(read_only=True))
