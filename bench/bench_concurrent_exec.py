"""200 concurrent execs on one container: ctr-magic (containerd) vs docker-py ``exec_run`` threads.

Both sides run on the same private containerd (docker-py through the environment's private dockerd,
which drives that containerd), in rounds interleaved so load drift hits both. Each round starts
``CONCURRENT`` threads at once, each running ``echo hi`` and checking the output; reported are the
round's wall time and every exec's latency (p50, p95).

containerd 1.6's runc shim runs exec Starts one after another (under its event lock), so the wall
time is bounded below by ``CONCURRENT`` x one ``runc exec``; ctr-magic queues its Starts per
container itself (see ``ExecPart._start_lock`` for why, with the measurements).
"""

from __future__ import annotations

import contextlib
import io
import secrets
import tempfile
import threading
import time
from collections.abc import Callable

from ctr_magic import errors
from ctr_magic.containerd.service import DefaultService
from ctr_magic.daemon import Environment, EnvironmentInfo
from ctr_magic.testimages import publish_test_images
from ctr_magic.types import ContainerSpec, CreateContainerRequest, DeleteContainerOptions, ExecTaskRequest

from .runner import Comparison

NAMESPACE = "ctr-magic-bench-concurrent"
CONCURRENT = 200
ROUNDS = 3


def _round(one: Callable[[], None]) -> tuple[float, list[float]]:
    """Wall seconds of CONCURRENT threads started together, and each one's latency."""
    latencies: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    gate = threading.Barrier(CONCURRENT + 1)

    def worker() -> None:
        gate.wait()
        started = time.perf_counter()
        try:
            one()
        except BaseException as exc:
            failures.append(exc)
        with lock:
            latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=worker) for _ in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    gate.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} of {CONCURRENT} execs failed, e.g. {failures[0]!r}")
    return wall, latencies


def run(env: EnvironmentInfo) -> list[Comparison]:
    import docker  # docker-py, the reference (a dev dependency)

    info = Environment(env.base_dir).up(with_docker=True)
    assert info.dockerd_socket
    with tempfile.TemporaryDirectory(prefix="bench-concurrent-") as work:
        image = publish_test_images(info.registry_addr, work_dir=work)["busybox"]
        svc = DefaultService.connect(info.containerd_socket, NAMESPACE, data_dir=work)
        client = docker.DockerClient(base_url=f"unix://{info.dockerd_socket}", timeout=600)
        box = f"bench-c-{secrets.token_hex(4)}"
        theirs_box = None
        try:
            svc.pull_image(image)
            svc.create_container(CreateContainerRequest(id=box, image_ref=image,
                                                        spec=ContainerSpec(cmd=["sleep", "1000000"])))
            svc.start_container(box)
            repo, _, tag = image.rpartition(":")
            client.images.pull(repo, tag=tag)
            theirs_box = client.containers.run(image, ["sleep", "1000000"], detach=True)

            def ours() -> None:
                out = io.BytesIO()
                result = svc.exec_task(box, ExecTaskRequest(args=["echo", "hi"], stdout=out))
                if result.exit_code != 0 or out.getvalue() != b"hi\n":
                    raise AssertionError(f"exec gave {result.exit_code} {out.getvalue()!r}")

            wrong: list[str] = []

            def theirs() -> None:
                try:
                    code, output = theirs_box.exec_run(["echo", "hi"])
                except Exception as exc:  # seen: urllib3's pool closed under 200 threads ('NoneType' ... 'qsize')
                    wrong.append(repr(exc))
                    return
                if code != 0 or output != b"hi\n":  # docker-py #3332: fast commands' output can go missing
                    wrong.append(f"{code} {output!r}")

            walls: tuple[list[float], list[float]] = ([], [])
            each: tuple[list[float], list[float]] = ([], [])
            _round(ours), _round(theirs)  # warm-up
            for _ in range(ROUNDS):
                for side, fn in enumerate((ours, theirs)):
                    wall, latencies = _round(fn)
                    walls[side].append(wall)
                    each[side].extend(latencies)
            note = [f"docker-py returned a wrong result for {len(wrong)} of {CONCURRENT * (ROUNDS + 1)} execs "
                    f"(e.g. {wrong[0]}); ctr-magic for none"] if wrong else []
            return [
                Comparison(f"{CONCURRENT} concurrent execs on one container: wall time", walls[0], walls[1],
                           "docker-py exec_run", target=1.0, notes=note),
                Comparison(f"{CONCURRENT} concurrent execs on one container: each exec", each[0], each[1],
                           "docker-py exec_run", target=1.0),
            ]
        finally:
            if theirs_box is not None:
                with contextlib.suppress(Exception):
                    theirs_box.remove(force=True)
            with contextlib.suppress(errors.CtrError):
                svc.delete_container(box, DeleteContainerOptions(force=True))
            svc.close()
            client.close()
