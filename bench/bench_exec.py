"""Exec latency, exec stdout throughput and a short container's lifecycle: ctr-magic vs ctr (and runc).

All on one private containerd, in a namespace used only by this benchmark, sides interleaved so
load drift hits both:

* exec latency of ``true`` (output captured through FIFOs) on one running container: ctr-magic
  in-process vs ``ctr task exec`` vs ``runc exec`` on the shim's runc root (the floor: no
  containerd, no shim, no FIFOs). Targets: p50 <= 0.8 x ctr and <= 2 x runc.
* 1 GiB through stdout (``head -c 1073741824 /dev/zero``): ctr-magic's exec_task into a discarding
  binary writer vs ``ctr task exec ... > /dev/null``, as MiB/s. Target: >= ctr.
* create + start + wait + delete of a container running ``true``: ctr-magic vs ``ctr run --rm``.
  Target: <= ctr.
"""

from __future__ import annotations

import io
import secrets
import subprocess
import tempfile
import time

from ctr_magic.containerd.service import DefaultService
from ctr_magic.env import EnvironmentInfo, find_binary
from ctr_magic.testimages import publish_test_images
from ctr_magic.types import (
    ContainerSpec,
    CreateContainerRequest,
    DeleteContainerOptions,
    ExecTaskRequest,
)

from .runner import Comparison, Discard, interleave, timed

NAMESPACE = "ctr-magic-bench-exec"
RUNC_ROOT = "/run/containerd/runc"  # the runc shim's default --root (one directory per namespace)
LATENCY_CALLS = 150
THROUGHPUT_RUNS = 3
THROUGHPUT_BYTES = 1 << 30
LIFECYCLE_RUNS = 15


def run(env: EnvironmentInfo) -> list[Comparison]:
    with tempfile.TemporaryDirectory(prefix="ctr-magic-bench-exec-") as work:
        image = publish_test_images(env.registry_addr, work_dir=work)["busybox"]
        svc = DefaultService.connect(env.containerd_socket, NAMESPACE, data_dir=work)
        ctr = [find_binary("ctr"), "--address", env.containerd_socket, "-n", NAMESPACE]
        runc = [find_binary("runc"), "--root", f"{RUNC_ROOT}/{NAMESPACE}"]
        subprocess.run([*ctr, "images", "pull", "--plain-http", image], check=True, stdout=subprocess.DEVNULL)
        box = f"bench-{secrets.token_hex(4)}"
        svc.create_container(CreateContainerRequest(id=box, image_ref=image,
                                                    spec=ContainerSpec(cmd=["sleep", "1000000"])))
        try:
            svc.start_container(box)
            return [
                *_latency(svc, box, ctr, runc),
                _throughput(svc, box, ctr),
                _lifecycle(svc, image, ctr),
            ]
        finally:
            svc.delete_container(box, DeleteContainerOptions(force=True))
            svc.close()


def _latency(svc: DefaultService, box: str, ctr: list[str], runc: list[str]) -> list[Comparison]:
    def ours() -> float:
        out, err = io.BytesIO(), io.BytesIO()
        return timed(lambda: svc.exec_task(box, ExecTaskRequest(args=["true"], stdout=out, stderr=err)))

    def with_ctr() -> float:
        argv = [*ctr, "task", "exec", "--exec-id", f"b{secrets.token_hex(6)}", box, "true"]
        return timed(lambda: subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE))

    def with_runc() -> float:
        argv = [*runc, "exec", box, "true"]
        return timed(lambda: subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE))

    for fn in (ours, with_ctr, with_runc):  # warm-up
        fn()
    mine: list[float] = []
    theirs: list[float] = []
    floor: list[float] = []
    for _ in range(LATENCY_CALLS):
        mine.append(ours())
        theirs.append(with_ctr())
        floor.append(with_runc())
    ms = [t * 1e3 for t in mine]
    return [
        Comparison("exec latency of `true` (captured stdout/stderr) vs ctr", ms, [t * 1e3 for t in theirs],
                   "ctr task exec", unit="ms", target=0.8),
        Comparison("exec latency of `true` vs the runc floor", ms, [t * 1e3 for t in floor], "runc exec",
                   unit="ms", target=2.0,
                   notes=["runc exec alone: no containerd, no shim, no FIFOs"]),
    ]


def _throughput(svc: DefaultService, box: str, ctr: list[str]) -> Comparison:
    args = ["head", "-c", str(THROUGHPUT_BYTES), "/dev/zero"]
    mib = THROUGHPUT_BYTES / (1 << 20)

    def timed_ours() -> float:
        start = time.perf_counter()
        res = svc.exec_task(box, ExecTaskRequest(args=args, stdout=Discard()))
        elapsed = time.perf_counter() - start
        if res.exit_code:
            raise RuntimeError(f"head exited with {res.exit_code}")
        return mib / elapsed

    def with_ctr() -> float:
        argv = [*ctr, "task", "exec", "--exec-id", f"b{secrets.token_hex(6)}", box, *args]
        return mib / timed(lambda: subprocess.run(argv, check=True, stdin=subprocess.DEVNULL,
                                                  stdout=subprocess.DEVNULL))

    mine, theirs = interleave(timed_ours, with_ctr, THROUGHPUT_RUNS)
    return Comparison("stdout throughput, 1 GiB from head -c", mine, theirs, "ctr task exec >/dev/null",
                      unit="MiB/s", target=1.0, higher_is_better=True)


def _lifecycle(svc: DefaultService, image: str, ctr: list[str]) -> Comparison:
    def ours() -> float:
        cid = f"life-{secrets.token_hex(4)}"

        def cycle() -> None:
            svc.create_container(CreateContainerRequest(id=cid, image_ref=image, spec=ContainerSpec(cmd=["true"])))
            svc.start_container(cid)
            if svc.wait_task(cid, timeout=60) != 0:
                raise RuntimeError("the short-lived container failed")
            svc.delete_container(cid)

        return timed(cycle)

    def with_ctr() -> float:
        argv = [*ctr, "run", "--rm", image, f"life-{secrets.token_hex(4)}", "true"]
        return timed(lambda: subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE))

    ours()
    with_ctr()
    mine, theirs = interleave(ours, with_ctr, LIFECYCLE_RUNS)
    return Comparison("create + start + wait + delete of a `true` container", [t * 1e3 for t in mine],
                      [t * 1e3 for t in theirs], "ctr run --rm", unit="ms", target=1.0)
