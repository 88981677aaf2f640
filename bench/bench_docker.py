"""DockerService vs the docker CLI, on the private environment's own dockerd, sides interleaved:

* exec latency of ``true`` on one running container: ``DockerService.exec_task`` in-process vs
  ``docker exec`` (what a Docker user would shell out to). Target: ratio <= 1.
* 256 MiB through exec stdout (``head -c ... /dev/zero``): ``exec_task`` into a discarding
  writer vs ``docker exec ... > /dev/null``, as MiB/s. Target: >= the CLI.
* create + start + wait + delete of a container running ``true``: DockerService vs
  ``docker run --rm``. Target: <= the CLI.
* cold pull of the 5-layer test image from the local registry (image removed before each run):
  DockerService vs ``docker pull``. Target: <= the CLI.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import tempfile
from typing import Any

from ctr_magic import errors
from ctr_magic.docker.service import DockerService
from ctr_magic.env import Environment, EnvironmentInfo
from ctr_magic.testimages import publish_test_images
from ctr_magic.types import ContainerSpec, CreateContainerRequest, DeleteContainerOptions, ExecTaskRequest

from .runner import Comparison, Discard, interleave, timed

LATENCY_CALLS = 60
THROUGHPUT_RUNS = 3
THROUGHPUT_BYTES = 256 << 20
LIFECYCLE_RUNS = 20
PULL_RUNS = 5


def run(env: EnvironmentInfo) -> list[Comparison]:
    info = Environment(env.base_dir).up(with_docker=True)
    assert info.dockerd_socket
    cli_env = {**os.environ, "DOCKER_HOST": f"unix://{info.dockerd_socket}", "DOCKER_CONFIG": tempfile.mkdtemp()}

    def docker(*args: str, stdout: Any = subprocess.DEVNULL) -> None:
        subprocess.run(["docker", *args], check=True, stdout=stdout, stderr=subprocess.PIPE, env=cli_env)

    with tempfile.TemporaryDirectory(prefix="bench-docker-images-") as work:
        images = publish_test_images(info.registry_addr, work_dir=work)
    svc = DockerService.connect(info.dockerd_socket)
    box = f"bench-{secrets.token_hex(4)}"
    results = []
    try:
        svc.create_container(CreateContainerRequest(id=box, image_ref=images["busybox"],
                                                    spec=ContainerSpec(cmd=["sleep", "3600"])))
        svc.start_container(box)

        ours_exec = lambda: timed(lambda: svc.exec_task(box, ExecTaskRequest(args=["true"])))  # noqa: E731
        cli_exec = lambda: timed(lambda: docker("exec", box, "true"))  # noqa: E731
        ours_exec(), cli_exec()  # warm-up
        a, b = interleave(ours_exec, cli_exec, LATENCY_CALLS)
        results.append(Comparison("docker: exec latency of `true`", a, b, "docker exec", target=1.0))

        count = THROUGHPUT_BYTES >> 16
        args = ["dd", "if=/dev/zero", "bs=65536", f"count={count}"]
        sink = Discard()

        def ours_tp() -> float:
            secs = timed(lambda: svc.exec_task(box, ExecTaskRequest(args=args, stdout=sink)))
            return (THROUGHPUT_BYTES >> 20) / secs

        def cli_tp() -> float:
            secs = timed(lambda: docker("exec", box, *args))
            return (THROUGHPUT_BYTES >> 20) / secs

        a, b = interleave(ours_tp, cli_tp, THROUGHPUT_RUNS)
        results.append(Comparison(f"docker: exec stdout throughput ({THROUGHPUT_BYTES >> 20} MiB)", a, b,
                                  "docker exec", unit=" MiB/s", target=1.0, higher_is_better=True))

        def ours_life() -> float:
            cid = f"bench-l-{secrets.token_hex(4)}"

            def once() -> None:
                svc.create_container(CreateContainerRequest(id=cid, image_ref=images["busybox"],
                                                            spec=ContainerSpec(cmd=["true"])))
                svc.start_container(cid)
                svc.wait_task(cid)
                svc.delete_container(cid, DeleteContainerOptions())

            return timed(once)

        cli_life = lambda: timed(lambda: docker("run", "--rm", images["busybox"], "true"))  # noqa: E731
        a, b = interleave(ours_life, cli_life, LIFECYCLE_RUNS)
        results.append(Comparison("docker: create+start+wait+delete of `true`", a, b, "docker run --rm",
                                  target=1.0))

        ref = images["layers"]

        def drop() -> None:
            with contextlib.suppress(errors.NotFound):
                svc.delete_image(ref)

        def ours_pull() -> float:
            drop()
            return timed(lambda: svc.pull_image(ref))

        def cli_pull() -> float:
            drop()
            return timed(lambda: docker("pull", "-q", ref))

        a, b = interleave(ours_pull, cli_pull, PULL_RUNS)
        results.append(Comparison("docker: cold pull of a 5-layer image", a, b, "docker pull", target=1.0,
                                  notes=["the daemon does the pull on both sides"]))
    finally:
        with contextlib.suppress(errors.CtrError):
            svc.delete_container(box, DeleteContainerOptions(force=True))
        svc.close()
    return results
