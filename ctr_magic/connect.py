"""``ctr_magic.connect()``: pick a backend and hand back a Service."""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

from .constants import (
    BACKEND_APPLE,
    BACKEND_CONTAINERD,
    BACKEND_DOCKER,
    BACKEND_SWARM,
    DEFAULT_NAMESPACE,
    DEFAULT_SOCKET_PATH,
    ENV_BACKEND,
    ENV_NAMESPACE,
    ENV_SOCKET,
)
from .errors import InvalidArgument

log = logging.getLogger(__name__)

BACKENDS = (BACKEND_CONTAINERD, BACKEND_DOCKER, BACKEND_APPLE, BACKEND_SWARM)


def default_containerd_socket() -> str:
    """$CTR_MAGIC_SOCKET, else the private daemon `ctr-magic up` started, else the system socket."""
    env = os.environ.get(ENV_SOCKET)
    if env:
        return env
    try:
        from .env import Environment

        info = Environment().status()
        if info is not None:
            return info.containerd_socket
    except Exception:  # no embedded environment: fall through to the system default
        log.debug("no embedded environment found", exc_info=True)
    return DEFAULT_SOCKET_PATH


def connect(
    backend: Optional[str] = None,
    socket: Optional[str] = None,
    namespace: Optional[str] = None,
    **options: Any,
) -> Any:
    """Connect to a backend and return its Service.

    >>> svc = connect()                                  # containerd, default or embedded socket
    >>> svc = connect("docker", socket="/run/docker.sock")
    """
    backend = (backend or os.environ.get(ENV_BACKEND) or BACKEND_CONTAINERD).lower()
    if backend == BACKEND_CONTAINERD:
        from .containerd.service import DefaultService

        return DefaultService.connect(
            socket or default_containerd_socket(),
            namespace or os.environ.get(ENV_NAMESPACE) or DEFAULT_NAMESPACE,
            **options,
        )
    if backend == BACKEND_DOCKER:
        from .docker.service import DockerService

        return DockerService.connect(socket, **options)
    if backend == BACKEND_APPLE:
        from .apple import AppleService, AppleServiceConfig

        return AppleService(AppleServiceConfig(socket_path=socket or "", **options))
    if backend == BACKEND_SWARM:
        from .swarm.service import SwarmService

        return SwarmService.connect(socket, **options)
    raise InvalidArgument(f"unknown backend {backend!r}", hint=f"choose one of {', '.join(BACKENDS)}")
