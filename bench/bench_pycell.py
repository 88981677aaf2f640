"""``%%ctr py`` against what a Python user would do otherwise, sides interleaved, one kept container:

* round trip of ``x + 1`` (``y = %ctr py box --in x -- x + 1``, value in and out, through the magic in an
  IPython shell) vs ``docker exec box python3 -c 'print(41 + 1)'`` on the same container (target:
  ratio <= 1.0), and vs a local ``subprocess.run([sys.executable, "-c", ...])``; on the Docker
  backend (the same container the CLI uses) and on containerd;
* a 100 MiB DataFrame in and back out (``--in big --out back``) as MiB/s moved, vs writing and
  reading the same frame as a Parquet file on local disk (pyarrow), on both backends.

The image is the Debian + pandas one (python3 3.11, pandas 1.5, numpy 1.24; no pyarrow, so frames
cross column by column as numpy arrays).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctr_magic.debian_image import ensure_debian_image
from ctr_magic.env import Environment, EnvironmentInfo, default_base_dir
from ctr_magic.types import ContainerSpec, CreateContainerRequest, DeleteContainerOptions

from .runner import Comparison, interleave, timed

ROUND_TRIPS = 60
FRAME_RUNS = 3
FRAME_BYTES = 100 << 20


def _shell(backend: str, socket: str, namespace: str) -> Any:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("load_ext", "ctr_magic")
    ip.run_line_magic("config", f"CtrMagic.backend = {backend!r}")
    ip.run_line_magic("config", f"CtrMagic.socket = {socket!r}")
    if namespace:
        ip.run_line_magic("config", f"CtrMagic.namespace = {namespace!r}")
    ip.run_line_magic("config", "CtrMagic.progress = 'none'")
    return ip


def _cell(ip: Any, source: str) -> None:
    result = ip.run_cell(source, silent=True)
    if not result.success:
        raise RuntimeError(f"benchmark cell failed: {result.error_in_exec}")


def _start_box(service: Any, image: str, name: str) -> None:
    service.pull_image(image)
    service.create_container(CreateContainerRequest(id=name, image_ref=image,
                                                    spec=ContainerSpec(cmd=["sleep", "infinity"])))
    service.start_container(name)


def run(env: EnvironmentInfo) -> list[Comparison]:
    from ctr_magic.containerd.service import DefaultService
    from ctr_magic.docker.service import DockerService

    info = Environment(env.base_dir).up(with_docker=True)
    assert info.dockerd_socket
    image = ensure_debian_image(info.registry_addr, cache_root=default_base_dir() / "cache").ref
    cli_env = {**os.environ, "DOCKER_HOST": f"unix://{info.dockerd_socket}", "DOCKER_CONFIG": tempfile.mkdtemp()}
    namespace = "bench-pycell"
    backends = {
        "docker": (DockerService.connect(info.dockerd_socket), info.dockerd_socket, ""),
        "containerd": (DefaultService.connect(info.containerd_socket, namespace), info.containerd_socket, namespace),
    }
    rng = np.random.default_rng(0)
    rows = FRAME_BYTES // 8 // 4
    big = pd.DataFrame({f"c{i}": rng.random(rows) for i in range(4)})
    mib = 2 * FRAME_BYTES / 2**20  # in and out
    results = []
    box = "bench-py"
    try:
        for name, (service, socket, ns) in backends.items():
            _start_box(service, image, box)
            ip = _shell(name, socket, ns)
            ip.user_ns.update(x=41, big=big)
            _cell(ip, f"y = %ctr py {box} --in x -- x + 1")  # starts the agent
            assert ip.user_ns["y"] == 42

            def ours(ip: Any = ip) -> float:
                return timed(lambda: _cell(ip, f"y = %ctr py {box} --in x -- x + 1"))

            if name == "docker":
                def reference() -> float:
                    return timed(lambda: subprocess.run(
                        ["docker", "exec", box, "python3", "-c", "print(41 + 1)"], check=True,
                        capture_output=True, env=cli_env))

                a, b = interleave(ours, reference, ROUND_TRIPS)
                results.append(Comparison("docker: %ctr py round trip of x + 1 (kept container)", a, b,
                                          "docker exec py", unit="s", target=1.0))
                docker_exec = b

            def local() -> float:
                return timed(lambda: subprocess.run([sys.executable, "-c", "print(41 + 1)"], check=True,
                                                    stdout=subprocess.PIPE))

            a, b = interleave(ours, local, ROUND_TRIPS)
            results.append(Comparison(f"{name}: %ctr py round trip of x + 1 vs a local python -c", a, b,
                                      "local python -c", unit="s"))
            if name == "containerd":
                results.append(Comparison("containerd: %ctr py round trip of x + 1 vs docker exec python3 -c",
                                          a, docker_exec, "docker exec py", unit="s", target=1.0))

            def frame_ours(ip: Any = ip) -> float:
                return mib / timed(lambda: _cell(ip, f"%%ctr py {box} --in big --out back\nback = big"))

            with tempfile.TemporaryDirectory(prefix="bench-parquet-") as tmp:
                path = Path(tmp) / "big.parquet"

                def frame_parquet(path: Path = path) -> float:
                    def both() -> None:
                        big.to_parquet(path)
                        pd.read_parquet(path)

                    return mib / timed(both)

                frame_ours(), frame_parquet()  # warm-up
                a, b = interleave(frame_ours, frame_parquet, FRAME_RUNS)
            results.append(Comparison(f"{name}: 100 MiB DataFrame in and out of %ctr py", a, b,
                                      "Parquet on disk", unit=" MiB/s", higher_is_better=True))
            ip.run_line_magic("unload_ext", "ctr_magic")
    finally:
        for service, _, _ in backends.values():
            with contextlib.suppress(Exception):
                service.delete_container(box, DeleteContainerOptions(force=True))
            service.close()
    return results
