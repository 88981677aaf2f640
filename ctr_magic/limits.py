"""Resource limits of a container (memory, CPU, pids, /dev/shm, rlimits, read-only root), backend-neutral.

``ContainerSpec(limits=ResourceLimits(memory=parse_size("512m"), cpus=1.5))`` asks for them at create;
containerd writes them into the OCI spec's ``linux.resources`` (:mod:`ctr_magic.containerd.resources`),
Docker into ``HostConfig``. Sizes are bytes; ``0`` means "not set" everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import InvalidArgument

#: The smallest memory limit runc and Docker accept (Docker refuses below 6 MiB).
MIN_MEMORY = 6 * 1024 * 1024
CPU_PERIOD = 100_000  # µs, the CFS period Docker and runc use

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*\Z", re.IGNORECASE)

#: rlimit names ``--ulimit`` takes (Docker's spelling) -> the OCI type.
RLIMITS = {
    name: f"RLIMIT_{name.upper()}"
    for name in ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
                 "rss", "rtprio", "rttime", "sigpending", "stack")
}


@dataclass(frozen=True)
class Ulimit:
    """One rlimit: ``name`` as Docker spells it (``nofile``), soft and hard values."""

    name: str
    soft: int
    hard: int

    @property
    def oci_type(self) -> str:
        return RLIMITS[self.name]


@dataclass
class ResourceLimits:
    memory: int = 0  # bytes
    memory_swap: int = 0  # bytes of memory + swap; -1 unlimited; 0: twice memory (as Docker)
    cpus: float = 0.0  # CPUs' worth of time per period
    cpu_shares: int = 0  # relative weight (1024 = default)
    pids_limit: int = 0
    shm_size: int = 0  # bytes of /dev/shm
    ulimits: list[Ulimit] = field(default_factory=list)
    read_only: bool = False  # read-only root filesystem

    def is_empty(self) -> bool:
        return self == ResourceLimits()

    def has_cgroup_limits(self) -> bool:
        return bool(self.memory or self.memory_swap or self.cpus or self.cpu_shares or self.pids_limit)

    def swap_total(self) -> int:
        """memory + swap as runc/Docker take it: the given value, else twice the memory limit."""
        if self.memory_swap:
            return self.memory_swap
        return 2 * self.memory if self.memory else 0

    def check(self) -> ResourceLimits:
        """One-line InvalidArgument for a combination no runtime accepts; returns self."""
        if self.memory and self.memory < MIN_MEMORY:
            raise InvalidArgument(f"--memory {human_bytes(self.memory)} is below the minimum of 6 MiB")
        if self.memory_swap and self.memory_swap != -1:
            if not self.memory:
                raise InvalidArgument("--memory-swap needs --memory too", hint="e.g. --memory 512m --memory-swap 1g")
            if self.memory_swap < self.memory:
                raise InvalidArgument(f"--memory-swap {human_bytes(self.memory_swap)} is below --memory "
                                      f"{human_bytes(self.memory)}", hint="it counts memory plus swap")
        if self.cpus < 0 or self.cpu_shares < 0 or self.pids_limit < 0 or self.shm_size < 0 or self.memory < 0:
            raise InvalidArgument("resource limits cannot be negative")
        if self.cpus and self.cpus * CPU_PERIOD < 1000:
            raise InvalidArgument(f"--cpus {self.cpus} is below the minimum of 0.01")
        return self


def parse_size(text: str, what: str = "size") -> int:
    """``512m``, ``1g``, ``64MiB``, ``1.5G`` or plain bytes -> bytes."""
    m = _SIZE.match(str(text))
    if not m:
        raise InvalidArgument(f"{what} {text!r} is not a size", hint="e.g. 512m, 1g or a number of bytes")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_swap(text: str) -> int:
    """``--memory-swap``: a size, or ``-1`` for unlimited swap."""
    return -1 if str(text).strip() == "-1" else parse_size(text, "--memory-swap")


def parse_cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(f"--cpus {text!r} is not a number", hint="e.g. --cpus 1.5") from None
    if value <= 0:
        raise InvalidArgument(f"--cpus {text!r} must be above 0")
    return value


def parse_ulimit(text: str) -> Ulimit:
    """``nofile=1024`` or ``nofile=1024:2048`` (soft:hard), as ``docker run --ulimit``."""
    name, eq, values = str(text).partition("=")
    name = name.strip().lower()
    if not eq or name not in RLIMITS:
        raise InvalidArgument(f"--ulimit {text!r} is not NAME=SOFT[:HARD]",
                              hint=f"NAME is one of {', '.join(sorted(RLIMITS))}")
    soft_text, _, hard_text = values.partition(":")
    try:
        soft = int(soft_text)
        hard = int(hard_text) if hard_text else soft
    except ValueError:
        raise InvalidArgument(f"--ulimit {text!r}: the values must be whole numbers") from None
    if soft > hard and hard != -1:
        raise InvalidArgument(f"--ulimit {text!r}: the soft limit is above the hard one")
    return Ulimit(name, soft, hard)


def human_bytes(size: int) -> str:
    """``64 MiB``, ``1.5 GiB``: binary units, as limits are usually given."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def oom_message(memory_limit: int) -> str:
    """The one line an OOM-killed process is reported with."""
    limit = f" (limit {human_bytes(memory_limit)})" if memory_limit > 0 else ""
    return f"killed: out of memory{limit}"


__all__ = ["CPU_PERIOD", "MIN_MEMORY", "ResourceLimits", "Ulimit", "human_bytes", "oom_message", "parse_cpus",
           "parse_size", "parse_swap", "parse_ulimit"]
