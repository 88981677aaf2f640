"""ctr-magic: containers as a notebook-native resource.

``%load_ext ctr_magic`` registers the ``%ctr`` / ``%%ctr`` magics; ``ctr_magic.connect()``
returns a :class:`Service` for scripts. Heavy modules load on first use to keep import fast.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported here, not lazily: importing the submodule ``ctr_magic.connect`` (the notebook layer does)
# would otherwise leave the module, not the function, as ``ctr_magic.connect``. It is cheap.
from .connect import connect
from .constants import (
    BACKEND_APPLE,
    BACKEND_CONTAINERD,
    BACKEND_DOCKER,
    DEFAULT_NAMESPACE,
    DEFAULT_SOCKET_PATH,
)
from .errors import (
    AlreadyExists,
    CtrError,
    FailedPrecondition,
    Interrupted,
    InvalidArgument,
    NotFound,
    NotSupported,
    TaskStopTimeout,
    Unauthorized,
    Unavailable,
)
from .service import Service
from .types import *  # noqa: F403  (the contract's dataclasses are the public API)
from .types import __all__ as _types_all

__version__ = "0.1.0"

_LAZY = {
    "DefaultService": ("ctr_magic.containerd.service", "DefaultService"),
    "DefaultClientFactory": ("ctr_magic.containerd.client", "DefaultClientFactory"),
    "ContainerdClient": ("ctr_magic.containerd.client", "ContainerdClient"),
    "DockerService": ("ctr_magic.docker.service", "DockerService"),
    "AppleService": ("ctr_magic.apple", "AppleService"),
    "AppleServiceConfig": ("ctr_magic.apple", "AppleServiceConfig"),
    "mount_snapshot": ("ctr_magic.containerd.mounts", "mount_snapshot"),
    "mount_container_snapshot": ("ctr_magic.containerd.mounts", "mount_container_snapshot"),
    "resolve_conf_source": ("ctr_magic.hosthelpers", "resolve_conf_source"),
    "timezone_spec": ("ctr_magic.hosthelpers", "timezone_spec"),
    "normalize": ("ctr_magic.reference", "normalize"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'ctr_magic' has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    from .notebook.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .notebook.magics import unload_ipython_extension as _unload

    _unload(ipython)


__all__ = [  # noqa: PLE0604  (the lazy names and the contract types are listed where they are defined)
    "BACKEND_APPLE",
    "BACKEND_CONTAINERD",
    "BACKEND_DOCKER",
    "DEFAULT_NAMESPACE",
    "DEFAULT_SOCKET_PATH",
    "AlreadyExists",
    "CtrError",
    "FailedPrecondition",
    "Interrupted",
    "InvalidArgument",
    "NotFound",
    "NotSupported",
    "Service",
    "TaskStopTimeout",
    "Unauthorized",
    "Unavailable",
    "connect",
    *_LAZY,
    *_types_all,
]
