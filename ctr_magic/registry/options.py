"""How to reach registries: which may use plain HTTP, which credentials to use, how patient to be."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Optional

from ..constants import ENV_INSECURE_REGISTRIES

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


@dataclass(frozen=True)
class Credentials:
    """A user name and a secret. ``repr`` never shows the secret."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)  # an OAuth2 refresh token (docker login with SSO)
    source: str = ""  # where they came from, for error messages ("~/.docker/config.json")

    def __bool__(self) -> bool:
        return bool(self.password or self.identity_token)


def host_name(host: str) -> str:
    """``127.0.0.1:5000`` -> ``127.0.0.1``; ``[::1]:5000`` -> ``::1``."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def is_local_host(host: str) -> bool:
    """True for localhost and loopback addresses (with or without a port)."""
    name = host_name(host).lower()
    if name in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass
class RegistryOptions:
    """Settings shared by every registry request.

    ``insecure_registries`` lists hosts (``name`` or ``name:port``) that may be spoken to over plain
    HTTP; loopback hosts always may. ``credentials`` maps a host to :class:`Credentials` and wins over
    the Docker config file (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``).
    """

    insecure_registries: tuple[str, ...] = ()
    credentials: dict[str, Credentials] = field(default_factory=dict, repr=False)
    docker_config: Optional[str] = None  # a config.json path; default: $DOCKER_CONFIG or ~/.docker
    ca_file: Optional[str] = None  # extra CA bundle to trust (PEM)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    # A blob download that receives no byte for this long fails with an error naming blob and registry
    # (separate from PullImageOptions.timeout, the limit on the whole pull). None: wait forever.
    stall_timeout: Optional[float] = 30.0
    max_attempts: int = 4  # per request, for transient failures
    max_concurrent_downloads: int = 4
    chunk_size: int = 4 << 20  # bytes per Content.Write message: bigger messages cost containerd less CPU

    @classmethod
    def from_env(cls) -> RegistryOptions:
        raw = os.environ.get(ENV_INSECURE_REGISTRIES, "")
        return cls(insecure_registries=tuple(h.strip() for h in raw.split(",") if h.strip()))

    def allows_plain_http(self, host: str) -> bool:
        if is_local_host(host):
            return True
        wanted = {host.lower(), host_name(host).lower()}
        return any(entry.lower() in wanted for entry in self.insecure_registries)
