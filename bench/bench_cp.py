"""``%ctr cp`` against the reference tools, sides interleaved, on the private environment:

* Docker: ``DockerService.copy_to_container`` / ``copy_from_container`` (Engine API archive) vs
  ``docker cp`` on the same dockerd, both ways. Target: ratio <= 1.
* containerd: ``DefaultService`` copies (host-side tar through the task's root) vs the floor of
  the same work with ``cp -a`` into and out of ``/proc/<pid>/root`` (no tool to beat: nerdctl is
  not packaged here). Reported, no target.

The tree: COPY_FILES random files, COPY_BYTES in all.
"""

from __future__ import annotations

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
from ctr_magic.types import ContainerSpec, CreateContainerRequest, DeleteContainerOptions, StartTaskOptions

from .runner import Comparison, interleave, timed

COPY_FILES = 64
COPY_BYTES = 128 << 20
RUNS = 5


def _tree(root: str) -> None:
    os.makedirs(root)
    for i in range(COPY_FILES):
        with open(os.path.join(root, f"f{i:03}.bin"), "wb") as fh:
            fh.write(os.urandom(COPY_BYTES // COPY_FILES))


def _fresh(path: str) -> str:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def run(env: EnvironmentInfo) -> list[Comparison]:
    info = Environment(env.base_dir).up(with_docker=True)
    assert info.dockerd_socket
    cli_env = {**os.environ, "DOCKER_HOST": f"unix://{info.dockerd_socket}", "DOCKER_CONFIG": tempfile.mkdtemp()}

    def cli(*args: str) -> None:
        subprocess.run(list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env)

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-cp-") as work:
        images = publish_test_images(info.registry_addr, work_dir=os.path.join(work, "images"))
        src = os.path.join(work, "data")
        _tree(src)
        mib = COPY_BYTES >> 20
        docker = DockerService.connect(info.dockerd_socket)
        containerd = DefaultService.connect(info.containerd_socket, f"bench-cp-{secrets.token_hex(3)}")
        made: list[tuple[Any, str]] = []
        try:
            for svc in (docker, containerd):
                cid = f"bench-cp-{secrets.token_hex(4)}"
                svc.create_container(CreateContainerRequest(id=cid, image_ref=images["busybox"],
                                                            spec=ContainerSpec(cmd=["sleep", "3600"])))
                svc.start_container(cid, StartTaskOptions())
                made.append((svc, cid))
            (_, dbox), (_, cbox) = made
            out_dir = os.path.join(work, "out")

            a, b = interleave(lambda: timed(lambda: docker.copy_to_container(dbox, src, "/tmp/")),
                              lambda: timed(lambda: cli("docker", "cp", src, f"{dbox}:/tmp/")), RUNS)
            results.append(Comparison(f"cp into a container, Docker ({mib} MiB, {COPY_FILES} files)", a, b,
                                      "docker cp", target=1.0))
            a, b = interleave(
                lambda: timed(lambda: docker.copy_from_container(dbox, "/tmp/data", _fresh(out_dir))),
                lambda: timed(lambda: cli("docker", "cp", f"{dbox}:/tmp/data", _fresh(out_dir))), RUNS)
            results.append(Comparison(f"cp out of a container, Docker ({mib} MiB)", a, b, "docker cp", target=1.0))

            root = f"/proc/{containerd.get_task_info(cbox).pid}/root"
            a, b = interleave(lambda: timed(lambda: containerd.copy_to_container(cbox, src, "/tmp/")),
                              lambda: timed(lambda: cli("cp", "-a", src, f"{root}/tmp/")), RUNS)
            results.append(Comparison(f"cp into a container, containerd ({mib} MiB)", a, b, "cp -a (floor)"))
            a, b = interleave(
                lambda: timed(lambda: containerd.copy_from_container(cbox, "/tmp/data", _fresh(out_dir))),
                lambda: timed(lambda: cli("cp", "-a", f"{root}/tmp/data", _fresh(out_dir))), RUNS)
            results.append(Comparison(f"cp out of a container, containerd ({mib} MiB)", a, b, "cp -a (floor)"))
        finally:
            for svc, cid in made:
                svc.delete_container(cid, DeleteContainerOptions(cleanup_snapshot=True, force=True))
            docker.close()
            containerd.close()
    return results
