"""What the registry clients of one session share: TLS contexts (with the host's extra CAs) and probed schemes."""

from __future__ import annotations

import glob
import ssl
import threading
from typing import Optional

_CERT_DIRS = ("/etc/containerd/certs.d", "/etc/docker/certs.d")


def _ssl_context(host: str, ca_file: Optional[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(ca_file)
    for base in _CERT_DIRS:
        for cert in sorted(glob.glob(f"{base}/{host}/*.crt")):
            ctx.load_verify_locations(cert)
    return ctx


class ClientCache:
    """What clients of one session may share between operations: TLS contexts and probed schemes.

    Credentials and tokens are not shared: every operation reads the Docker config afresh.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: dict[tuple[str, Optional[str]], ssl.SSLContext] = {}
        self._bases: dict[str, str] = {}

    def ssl_context(self, host: str, ca_file: Optional[str]) -> ssl.SSLContext:
        with self._lock:
            ctx = self._contexts.get((host, ca_file))
            if ctx is None:
                ctx = self._contexts[(host, ca_file)] = _ssl_context(host, ca_file)
            return ctx

    def base(self, host: str) -> str:
        with self._lock:
            return self._bases.get(host, "")

    def remember_base(self, host: str, base: str) -> None:
        with self._lock:
            self._bases[host] = base

    def forget_base(self, host: str) -> None:
        with self._lock:
            self._bases.pop(host, None)


__all__ = ["ClientCache"]
