"""The embedded private environment: our own containerd, registry and (optionally) dockerd.

``Environment(base_dir).up()`` starts

* ``containerd --config <base>/containerd/config.toml`` with its own root (under the base dir),
  state and sockets (under a short run dir, ``/run/ctr-magic/<hash of base dir>/``), the CRI
  plugin disabled and no debug/metrics listeners;
* ``docker-registry serve <base>/registry/config.yml`` on ``127.0.0.1:<free port>`` with
  filesystem storage under the base dir and deletes enabled;
* optionally ``dockerd --data-root <base>/docker ...`` on top of that containerd.

``down()`` kills every task, stops the daemons and leaves no process, mount or socket behind.

Modules: ``binaries`` (finding programs), ``processes`` (spawning, /proc, stopping), ``state``
(paths, state file), ``config`` (the daemons' config files), ``ctrcli`` (``ctr`` on our socket),
``start``, ``teardown``, and ``environment`` (the :class:`Environment` that composes them).
Mount syscalls live in :mod:`ctr_magic.hostmount`.
"""

from __future__ import annotations

from ..hostmount import mounts_under, unmount_all
from .binaries import PACKAGES, cni_bin_dir, find_binary
from .environment import Environment, socket_for
from .start import registry_ready
from .state import DEFAULT_BASE_DIR, EnvironmentInfo, default_base_dir, default_run_dir

__all__ = [
    "DEFAULT_BASE_DIR",
    "PACKAGES",
    "Environment",
    "EnvironmentInfo",
    "cni_bin_dir",
    "default_base_dir",
    "default_run_dir",
    "find_binary",
    "mounts_under",
    "registry_ready",
    "socket_for",
    "unmount_all",
]
