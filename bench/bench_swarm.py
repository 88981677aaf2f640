"""The swarm backend vs the ``docker service`` CLI (docker.io's) on a local 3-node cluster, in one run:

* ``%ctr run --replicas 6`` until all 6 tasks run (the magic, in-process, image pinned to its digest)
  vs ``docker service create --detach`` followed by ``docker service ps`` every 0.25 s until 6 tasks
  are Running (how a script waits with the CLI). Also shown: ``docker service create --detach=false``,
  which waits 5 s more on purpose (its monitor checks that tasks stay up). Target: ratio <= 1.
* listing 200 tasks: ``%ctr ps -a`` (a DataFrame with each task's node) vs ``docker service ps``.
  The 200 tasks are replicas held pending by a constraint no node meets, so the cluster does not
  have to run 200 containers on this machine. Target: ratio <= 1.

The cluster is this module's own (``SwarmCluster`` under a temporary directory), removed at the end.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import subprocess
import tempfile
import time
from typing import Any

from ctr_magic.swarm.cluster import SwarmCluster
from ctr_magic.swarm.service import SwarmService
from ctr_magic.testimages import busybox_single_layer, publish

from .runner import Comparison, interleave, time_call, timed

CREATE_RUNS = 5
PS_RUNS = 15
PS_TASKS = 200
REPLICAS = 6
POLL = 0.25


def run(env: Any) -> list[Comparison]:
    with tempfile.TemporaryDirectory(prefix="bench-swarm-") as base:
        cluster = SwarmCluster(base)
        info = cluster.up(3)
        try:
            image = busybox_single_layer(os.path.join(base, "layout"), tag="busybox")
            publish(image.layout, info.registry_addr, "ctr-magic/busybox", "latest", src_tag=image.tag)
            return _measure(info, f"{info.registry_addr}/ctr-magic/busybox:latest")
        finally:
            cluster.down()


def _measure(info: Any, image: str) -> list[Comparison]:
    from IPython.core.interactiveshell import InteractiveShell

    cli_env = {**os.environ, "DOCKER_HOST": f"unix://{info.manager_socket}", "DOCKER_CONFIG": tempfile.mkdtemp()}

    def docker(*args: str) -> str:
        return subprocess.run(["/usr/bin/docker", *args], check=True, capture_output=True, text=True,
                              env=cli_env).stdout

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ctr_magic")
    shell.run_line_magic("config", "CtrMagic.progress = 'none'")
    shell.run_line_magic("ctr", f"use swarm --socket {info.manager_socket}")
    swarm = SwarmService.connect(info.manager_socket)
    results = []
    try:
        def ours_create() -> float:
            name = f"b-{secrets.token_hex(3)}"
            with contextlib.redirect_stdout(io.StringIO()):
                took = timed(lambda: shell.run_line_magic("ctr", f"run --replicas {REPLICAS} --name {name} "
                                                                 f"{image} -- sleep 3600"))
            swarm.remove_service(name)
            return took

        def cli_create() -> float:
            name = f"b-{secrets.token_hex(3)}"

            def create_and_wait() -> None:
                docker("service", "create", "--detach", "-q", "--name", name, "--replicas", str(REPLICAS),
                       image, "sleep", "3600")
                while docker("service", "ps", "-q", "--filter", "desired-state=running", "--format",
                             "{{.CurrentState}}", name).count("Running") < REPLICAS:
                    time.sleep(POLL)

            took = timed(create_and_wait)
            swarm.remove_service(name)
            return took

        def cli_create_blocking() -> float:
            name = f"b-{secrets.token_hex(3)}"
            took = timed(lambda: docker("service", "create", "--detach=false", "-q", "--name", name, "--replicas",
                                        str(REPLICAS), image, "sleep", "3600"))
            swarm.remove_service(name)
            return took

        ours_create(), cli_create()  # warm-up: every node has the image afterwards
        a, b = interleave(ours_create, cli_create, CREATE_RUNS)
        results.append(Comparison(f"swarm: run --replicas {REPLICAS} until all tasks run", a, b,
                                  "docker service", target=1.0))
        blocking = [cli_create_blocking() for _ in range(2)]
        results.append(Comparison(f"swarm: run --replicas {REPLICAS} (CLI --detach=false, +5 s stability wait)",
                                  a, blocking, "service --detach=f"))

        name = f"b-pending-{secrets.token_hex(3)}"
        docker("service", "create", "--detach", "-q", "--name", name, "--replicas", str(PS_TASKS), "--constraint",
               "node.labels.bench==nowhere", image, "sleep", "3600")
        try:
            while len(swarm.service_tasks(name)) < PS_TASKS:
                time.sleep(POLL)
            ours_ps = time_call(lambda: shell.run_line_magic("ctr", "ps -a"), PS_RUNS)
            cli_ps = time_call(lambda: docker("service", "ps", name), PS_RUNS)
            frame = shell.run_line_magic("ctr", "ps -a")
            assert len(frame) == PS_TASKS, len(frame)
            results.append(Comparison(f"swarm: ps of {PS_TASKS} tasks (DataFrame)", ours_ps, cli_ps,
                                      "docker service ps", target=1.0))
        finally:
            swarm.remove_service(name)
    finally:
        shell.run_line_magic("unload_ext", "ctr_magic")
        swarm.close()
    return results
