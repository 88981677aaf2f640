"""OCI platforms: the host's, parsing ``os/arch[/variant]``, and matching index entries."""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass
from typing import Any, Optional

from .errors import InvalidArgument

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def to_oci(self) -> dict[str, str]:
        """The OCI ``platform`` object (``variant`` only when there is one)."""
        out = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            out["variant"] = self.variant
        return out

    def matches(self, other: dict[str, Any]) -> bool:
        """Does an OCI ``platform`` object (from an index entry or config) fit this platform?"""
        if other.get("os", "") != self.os:
            return False
        if _ARCH_ALIASES.get(other.get("architecture", ""), other.get("architecture", "")) != self.architecture:
            return False
        variant = other.get("variant", "")
        return not (self.variant and variant and variant != self.variant)


def host_platform() -> Platform:
    machine = _platform.machine().lower()
    arch = _ARCH_ALIASES.get(machine, machine)
    variant = "v8" if arch == "arm64" else ("v7" if machine == "armv7l" else "")
    return Platform("linux", arch, variant)


def parse_platform(text: str) -> Platform:
    """``linux/arm64``, ``linux/arm/v7``, or just ``arm64`` (linux assumed)."""
    parts = [p for p in text.strip().lower().split("/") if p]
    if not parts or len(parts) > 3:
        raise InvalidArgument(f"platform {text!r} is malformed", hint="use os/arch[/variant], e.g. linux/arm64")
    if len(parts) == 1:
        parts = ["linux", *parts]
    os_name, arch = parts[0], _ARCH_ALIASES.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else ""
    return Platform(os_name, arch, variant)


def format_platform(obj: Optional[dict[str, Any]]) -> str:
    if not obj:
        return ""
    return str(Platform(obj.get("os", ""), obj.get("architecture", ""), obj.get("variant", "")))
