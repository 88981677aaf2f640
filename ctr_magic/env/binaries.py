"""Finding the programs the embedded environment runs; a missing one names its Debian package."""

from __future__ import annotations

import os
import shutil

from .. import errors
from ..constants import CNI_BIN_DIRS

#: Debian package that provides each binary we run.
PACKAGES: dict[str, str] = {
    "containerd": "containerd",
    "ctr": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "runc": "runc",
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "busybox": "busybox-static",
    "dockerd": "docker.io",
    "docker": "docker.io",
    "bridge": "containernetworking-plugins",
}
_EXTRA_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def search_path() -> str:
    """$PATH plus the sbin directories (daemons live there and a user's PATH may lack them)."""
    parts = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    parts += [p for p in _EXTRA_PATH if p not in parts]
    return os.pathsep.join(parts)


def find_binary(name: str) -> str:
    """Absolute path of ``name`` (also looking in the sbin dirs); error names the Debian package."""
    found = shutil.which(name, path=search_path())
    if found:
        return found
    package = PACKAGES.get(name, name)
    raise errors.Unavailable(
        f"{name} not found", hint=f"install the Debian package {package} (apt-get install -y {package})"
    )


def cni_bin_dir() -> str:
    """Directory holding the CNI plugins (``bridge``, ``loopback``...)."""
    for d in CNI_BIN_DIRS:
        if os.access(os.path.join(d, "bridge"), os.X_OK):
            return d
    raise errors.Unavailable(
        "CNI plugins not found",
        hint="install the Debian package containernetworking-plugins (apt-get install -y containernetworking-plugins)",
    )


__all__ = ["PACKAGES", "cni_bin_dir", "find_binary", "search_path"]
