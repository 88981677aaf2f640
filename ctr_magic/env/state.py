"""Where an environment lives (its paths, which processes are its own) and its state file.

The pids, ports and paths of a running environment are kept in ``<base>/state.json`` so that
``status()`` and ``down()`` work from any process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..atomicfile import write_text_atomic
from ..constants import DEFAULT_RUNTIME, DEFAULT_SNAPSHOTTER, ENV_DOCKER_HOST, ENV_HOME, ENV_REGISTRY, ENV_SOCKET
from .processes import arg_value

log = logging.getLogger(__name__)

DEFAULT_BASE_DIR = "/var/lib/ctr-magic"
RUN_ROOT = "/run/ctr-magic"
STATE_FILE = "state.json"
STATE_VERSION = 1


@dataclass(frozen=True)
class EnvironmentInfo:
    """Where the running environment can be reached."""

    base_dir: str
    run_dir: str
    containerd_socket: str
    containerd_pid: int
    containerd_config: str
    registry_addr: str
    registry_pid: int
    dockerd_socket: str | None = None
    dockerd_pid: int | None = None
    started_at: float = 0.0
    runtime: str = DEFAULT_RUNTIME
    snapshotter: str = DEFAULT_SNAPSHOTTER

    @property
    def pids(self) -> dict[str, int]:
        out = {"containerd": self.containerd_pid, "registry": self.registry_pid}
        if self.dockerd_pid:
            out["dockerd"] = self.dockerd_pid
        return out

    @property
    def docker_host(self) -> str | None:
        return f"unix://{self.dockerd_socket}" if self.dockerd_socket else None

    @property
    def log_dir(self) -> str:
        return os.path.join(self.base_dir, "logs")

    def env(self) -> dict[str, str]:
        """Environment variables pointing clients at this environment."""
        out = {ENV_SOCKET: self.containerd_socket, ENV_REGISTRY: self.registry_addr, ENV_HOME: self.base_dir}
        if self.docker_host:
            out[ENV_DOCKER_HOST] = self.docker_host
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvironmentInfo:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def default_base_dir() -> Path:
    return Path(os.environ.get(ENV_HOME) or DEFAULT_BASE_DIR)


def default_run_dir(base_dir: str | os.PathLike[str]) -> Path:
    """``/run/ctr-magic/<12 hex of sha256(base_dir)>`` (``/tmp/ctr-magic-<uid>/...`` without /run)."""
    digest = hashlib.sha256(os.fsencode(os.path.realpath(base_dir))).hexdigest()[:12]
    root = Path(RUN_ROOT) if os.access("/run", os.W_OK) else Path(f"/tmp/ctr-magic-{os.getuid()}")
    return root / digest


@dataclass(frozen=True)
class EnvPaths:
    """Every path of one environment: its files under ``base_dir``, its sockets under ``run_dir``."""

    base_dir: Path
    run_dir: Path

    @property
    def state_file(self) -> Path:
        return self.base_dir / STATE_FILE

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "logs"

    @property
    def containerd_config(self) -> Path:
        return self.base_dir / "containerd" / "config.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def registry_config(self) -> Path:
        return self.base_dir / "registry" / "config.yml"

    @property
    def docker_root(self) -> Path:
        return self.base_dir / "docker"

    @property
    def docker_exec_root(self) -> Path:
        return self.run_dir / "docker"

    @property
    def docker_socket(self) -> Path:
        return self.run_dir / "docker.sock"

    # -- which running processes belong to this environment (by their command lines)

    def is_containerd(self, argv: Sequence[str]) -> bool:
        return (
            bool(argv)
            and os.path.basename(argv[0]) == "containerd"
            and arg_value(argv, "--config") == str(self.containerd_config)
        )

    def is_registry(self, argv: Sequence[str]) -> bool:
        return "docker-registry" in os.path.basename(argv[0]) and str(self.registry_config) in argv

    def is_dockerd(self, argv: Sequence[str]) -> bool:
        return os.path.basename(argv[0]) == "dockerd" and arg_value(argv, "--data-root") == str(self.docker_root)

    def is_shim(self, argv: Sequence[str]) -> bool:
        return "containerd-shim" in os.path.basename(argv[0]) and arg_value(argv, "-address") == str(
            self.containerd_socket
        )

    def is_ours(self, argv: Sequence[str]) -> bool:
        return self.is_containerd(argv) or self.is_registry(argv) or self.is_dockerd(argv) or self.is_shim(argv)

    # -- the state file

    def read_state(self) -> EnvironmentInfo | None:
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable state file %s: %s", self.state_file, exc)
            return None
        if data.get("version") != STATE_VERSION:
            log.warning("ignoring state file %s with version %r", self.state_file, data.get("version"))
            return None
        return EnvironmentInfo.from_dict(data.get("info", {}))

    def write_state(self, info: EnvironmentInfo) -> None:
        text = json.dumps({"version": STATE_VERSION, "info": info.to_dict()}, indent=2) + "\n"
        write_text_atomic(str(self.state_file), text)


__all__ = ["DEFAULT_BASE_DIR", "EnvPaths", "EnvironmentInfo", "default_base_dir", "default_run_dir"]
