"""``%%ctr build`` on containerd vs ``docker build`` (dockerd's own builder) on the private
environment's dockerd, same run, sides interleaved.

The Dockerfile has six steps after FROM: a COPY of 50 MiB of incompressible files (50 x 1 MiB),
three RUNs, ENV and CMD; the busybox base is present on both sides beforehand.

* cold: every step runs (``--no-cache`` on both sides). Target: ratio <= 1.2.
* cached: every step comes from the cache. Target: ratio <= 1.0.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from typing import Any

from ctr_magic.containerd.service import DefaultService
from ctr_magic.docker.service import DockerService
from ctr_magic.env import Environment, EnvironmentInfo
from ctr_magic.testimages import publish_test_images
from ctr_magic.testimages.busybox import random_stream_file
from ctr_magic.types import DeleteImageOptions, PullImageOptions

from .runner import Comparison, interleave, timed

RUNS = 5
FILES = 50
FILE_MIB = 1

DOCKERFILE = """\
FROM {base}
COPY data/ /data/
RUN du -s /data > /data-size.txt
RUN md5sum /data/f-0.bin /data/f-1.bin > /sums.txt
RUN mkdir -p /out && echo built > /out/marker
ENV APP_MODE=bench
CMD ["cat", "/data-size.txt"]
"""


def _context(directory: str) -> None:
    data = os.path.join(directory, "data")
    os.makedirs(data)
    for i in range(FILES):
        with random_stream_file(FILE_MIB << 20, seed=f"bench-build:{i}").opener() as src, \
                open(os.path.join(data, f"f-{i}.bin"), "wb") as dst:
            shutil.copyfileobj(src, dst)


def run(env: EnvironmentInfo) -> list[Comparison]:
    info = Environment(env.base_dir).up(with_docker=True)
    assert info.dockerd_socket
    cli_env = {**os.environ, "DOCKER_HOST": f"unix://{info.dockerd_socket}", "DOCKER_CONFIG": tempfile.mkdtemp(),
               "DOCKER_BUILDKIT": "0"}
    namespace = f"bench-build-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="bench-build-images-") as work:
        base = publish_test_images(info.registry_addr, work_dir=work)["busybox"]
    svc = DefaultService.connect(info.containerd_socket, namespace)
    docker = DockerService.connect(info.dockerd_socket)
    context = tempfile.mkdtemp(prefix="bench-build-context-")
    ours_tag, theirs_tag = f"localhost/bench/build-ours:{namespace}", f"localhost/bench/build-docker:{namespace}"
    try:
        _context(context)
        dockerfile = DOCKERFILE.format(base=base)
        with open(os.path.join(context, "Dockerfile"), "w") as fh:
            fh.write(dockerfile)
        svc.pull_image(base, PullImageOptions())
        docker.pull_image(base, PullImageOptions())

        def ours(no_cache: bool) -> float:
            return timed(lambda: svc.build_image(dockerfile, context, tags=[ours_tag], no_cache=no_cache))

        def theirs(no_cache: bool) -> float:
            args = ["docker", "build", "-q", "-t", theirs_tag, *(["--no-cache"] if no_cache else []), context]
            return timed(lambda: subprocess.run(args, check=True, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.PIPE, env=cli_env))

        ours(True), theirs(True)  # warm-up: page cache, first layers
        cold = interleave(lambda: ours(True), lambda: theirs(True), RUNS)
        ours(False), theirs(False)
        cached = interleave(lambda: ours(False), lambda: theirs(False), RUNS)
        notes = [f"{FILES} x {FILE_MIB} MiB COPY, 3 RUN, ENV, CMD; docker build with DOCKER_BUILDKIT=0 "
                 "(dockerd's own builder); ours writes uncompressed layers"]
        return [
            Comparison("build: 6-step Dockerfile, cold (--no-cache)", *cold, "docker build", target=1.2, notes=notes),
            Comparison("build: 6-step Dockerfile, fully cached", *cached, "docker build", target=1.0),
        ]
    finally:
        shutil.rmtree(context, ignore_errors=True)
        _cleanup(svc, docker, ours_tag, theirs_tag)


def _cleanup(svc: Any, docker: Any, ours_tag: str, theirs_tag: str) -> None:
    from ctr_magic.build.cache import BuildCache

    for action in (lambda: svc.delete_image(ours_tag, DeleteImageOptions(synchronous=False)),
                   lambda: BuildCache(svc, svc.snapshotter).prune(),
                   lambda: docker.delete_image(theirs_tag)):
        with contextlib.suppress(Exception):  # a benchmark's clean-up must not hide its figures
            action()
    svc.close()
    docker.close()
