"""The OCI runtime spec of a container, built the way containerd's clients build it.

Layers, applied in order (later wins):

1. containerd 1.6's default Linux spec (``ctr run`` / the Go client's ``oci.WithDefaultSpec`` plus
   ``oci.WithDefaultUnixDevices``): pid/ipc/uts/mount/network namespaces, the standard mounts,
   default capabilities, masked and read-only paths, RLIMIT_NOFILE 1024, cgroups path
   ``/<namespace>/<id>``, a deny-all device rule followed by the usual character devices.
2. The image config: Entrypoint + Cmd, Env (default PATH when the image has none), WorkingDir and
   User (names resolved against the image's /etc/passwd and /etc/group, supplementary groups too).
3. The caller's :class:`~ctr_magic.types.ContainerSpec`: cmd (replaces Entrypoint + Cmd, as
   ``ctr run IMAGE ID ARGS...`` does), env (merged by key; ``NAME`` without ``=`` unsets), work_dir,
   user, tty, mounts, DNS (a resolv.conf the caller wrote) and hostname.

Everything here is pure: files of the image are read through a :class:`RootfsFiles`, so the
builder is tested without a daemon.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from .. import errors
from ..constants import CONTAINER_RESOLV_CONF_NAME, DEFAULT_PATH_ENV
from ..hosthelpers import CONTAINER_RESOLV_CONF
from ..types import ContainerSpec, MountSpec
from .resources import apply_limits
from .userdb import (
    DirRootfs,
    NoRootfs,
    RootfsFiles,
    UserIds,
    parse_group,
    parse_passwd,
    resolve_user,
)

OCI_VERSION = "1.0.2-dev"

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

DEFAULT_NAMESPACES: tuple[str, ...] = ("pid", "ipc", "uts", "mount", "network")

MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)

READONLY_PATHS: tuple[str, ...] = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_DEFAULT_MOUNTS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    # destination, type, source, options
    ("/proc", "proc", "proc", ("nosuid", "noexec", "nodev")),
    ("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
    ("/dev/pts", "devpts", "devpts", ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5")),
    ("/dev/shm", "tmpfs", "shm", ("nosuid", "noexec", "nodev", "mode=1777", "size=65536k")),
    ("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")),
    ("/sys", "sysfs", "sysfs", ("nosuid", "noexec", "nodev", "ro")),
    ("/run", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
)

# (major, minor) of the character devices every container may use; minor None = any (the pty slaves).
_DEFAULT_CHAR_DEVICES: tuple[tuple[int, Optional[int]], ...] = (
    (1, 3),  # /dev/null
    (1, 8),  # /dev/random
    (1, 7),  # /dev/full
    (5, 0),  # /dev/tty
    (1, 5),  # /dev/zero
    (1, 9),  # /dev/urandom
    (5, 1),  # /dev/console
    (136, None),  # /dev/pts/*
    (5, 2),  # /dev/ptmx
)

NOFILE_LIMIT = 1024
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


# --------------------------------------------------------------------------- environment


def merge_env(base: Sequence[str], overrides: Iterable[str]) -> list[str]:
    """Replace or append ``KEY=value`` entries of *base* by key; a bare ``KEY`` removes it."""
    out: list[Optional[str]] = list(base)
    index: dict[str, int] = {}
    for i, item in enumerate(out):
        assert item is not None
        index[item.split("=", 1)[0]] = i
    for item in overrides:
        key = item.split("=", 1)[0]
        if "=" not in item:
            if key in index:
                out[index[key]] = None
            continue
        if key in index and out[index[key]] is not None:
            out[index[key]] = item
        else:
            index[key] = len(out)
            out.append(item)
    return [item for item in out if item is not None]


def _check_env(env: Iterable[str]) -> list[str]:
    env = list(env)
    for item in env:
        if not isinstance(item, str) or not item or item.startswith("=") or "\0" in item:
            raise errors.InvalidArgument(f"invalid environment entry {item!r}", hint="use KEY=value (or KEY to unset)")
    return env


# --------------------------------------------------------------------------- the spec


def default_spec(namespace: str, container_id: str) -> dict[str, Any]:
    """containerd 1.6's default Linux spec (``oci.WithDefaultSpec`` + ``oci.WithDefaultUnixDevices``)."""
    if not namespace or not container_id:
        raise errors.InvalidArgument("a spec needs a namespace and a container id")
    caps = list(DEFAULT_CAPABILITIES)
    devices: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for major, minor in _DEFAULT_CHAR_DEVICES:
        rule: dict[str, Any] = {"allow": True, "type": "c", "major": major}
        if minor is not None:
            rule["minor"] = minor
        rule["access"] = "rwm"
        devices.append(rule)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": [],
            "env": [],
            "cwd": "/",
            "capabilities": {"bounding": list(caps), "effective": list(caps), "permitted": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": NOFILE_LIMIT, "soft": NOFILE_LIMIT}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": dest, "type": type_, "source": source, "options": list(options)}
            for dest, type_, source, options in _DEFAULT_MOUNTS
        ],
        "linux": {
            "resources": {"devices": devices},
            "cgroupsPath": posixpath.join("/", namespace, container_id),
            "namespaces": [{"type": ns} for ns in DEFAULT_NAMESPACES],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def apply_image_config(spec: dict[str, Any], image_config: dict[str, Any], rootfs: RootfsFiles) -> None:
    """Entrypoint + Cmd, Env, WorkingDir and User of an image config (its ``config`` object)."""
    process = spec["process"]
    image_env = _check_env(image_config.get("Env") or []) or [DEFAULT_PATH_ENV]
    process["env"] = merge_env(image_env, process.get("env") or [])
    process["args"] = list(image_config.get("Entrypoint") or []) + list(image_config.get("Cmd") or [])
    process["cwd"] = image_config.get("WorkingDir") or "/"
    process["user"] = resolve_user(image_config.get("User") or "", rootfs).to_oci()


def _absolute(path: str, what: str) -> str:
    if not path or not path.startswith("/"):
        raise errors.InvalidArgument(f"{what} {path!r} is not an absolute path", hint="start it with /")
    return posixpath.normpath(path)


def oci_mount(mount: MountSpec) -> dict[str, Any]:
    """A :class:`MountSpec` as an OCI mount; bind mounts default to ``rbind`` and need a source."""
    destination = _absolute(mount.destination, "mount destination")
    type_ = mount.type or "bind"
    options = list(mount.options)
    source = mount.source
    if type_ == "bind":
        if not source:
            raise errors.InvalidArgument(f"bind mount on {destination} has no source", hint="give a host path")
        source = os.path.abspath(source)
        if not os.path.exists(source):
            raise errors.InvalidArgument(f"bind mount source {source} does not exist",
                                         hint=f"create it on the host, or drop the mount on {destination}")
        if "bind" not in options and "rbind" not in options:
            options.insert(0, "rbind")
    elif not source:
        source = type_
    return {"destination": destination, "type": type_, "source": source, "options": options}


def set_mount(spec: dict[str, Any], mount: dict[str, Any]) -> None:
    """Add *mount*, replacing any mount on the same destination (a caller's /dev/shm wins)."""
    mounts = spec.setdefault("mounts", [])
    dest = mount["destination"]
    mounts[:] = [m for m in mounts if posixpath.normpath(m["destination"]) != dest]
    mounts.append(mount)


def resolv_conf_text(nameservers: Sequence[str]) -> str:
    """The resolv.conf for ``ContainerSpec.dns``; every entry must be an IP address."""
    lines = []
    for server in nameservers:
        try:
            ipaddress.ip_address(server.strip())
        except ValueError:
            raise errors.InvalidArgument(f"DNS server {server!r} is not an IP address",
                                         hint="e.g. dns=['10.0.0.2']") from None
        lines.append(f"nameserver {server.strip()}")
    return "\n".join(lines) + "\n"


def check_hostname(hostname: str) -> str:
    if len(hostname) > 63 or not _HOSTNAME_RE.match(hostname):
        raise errors.InvalidArgument(f"invalid hostname {hostname!r}",
                                     hint="letters, digits and '-', at most 63 characters")
    return hostname


def default_hostname(container_id: str) -> str:
    """The container id when it is a valid hostname (ids may hold '_' or be long), else its first part."""
    if len(container_id) <= 63 and _HOSTNAME_RE.match(container_id):
        return container_id
    cleaned = re.sub(r"[^A-Za-z0-9-]", "-", container_id)[:63].strip("-")
    return cleaned or "container"


def apply_container_spec(
    spec: dict[str, Any],
    cs: ContainerSpec,
    rootfs: RootfsFiles,
    *,
    resolv_conf_path: str = "",
) -> None:
    """The caller's overrides; *resolv_conf_path* is the host file written from ``cs.dns`` (if any)."""
    process = spec["process"]
    if cs.cmd:
        if not all(isinstance(arg, str) for arg in cs.cmd):
            raise errors.InvalidArgument(f"cmd must be a list of strings, got {cs.cmd!r}")
        process["args"] = list(cs.cmd)
    if cs.env:
        process["env"] = merge_env(process.get("env") or [], _check_env(cs.env))
    if cs.work_dir:
        process["cwd"] = _absolute(cs.work_dir, "work_dir")
    if cs.user:
        process["user"] = resolve_user(cs.user, rootfs).to_oci()
    if cs.tty:
        process["terminal"] = True
        process["env"] = merge_env(process.get("env") or [], [] if _has_key(process["env"], "TERM")
                                   else ["TERM=xterm"])
    for mount in cs.mounts:
        set_mount(spec, oci_mount(mount))
    if resolv_conf_path:
        set_mount(spec, {"destination": CONTAINER_RESOLV_CONF, "type": "bind", "source": resolv_conf_path,
                         "options": ["rbind", "ro"]})
    if cs.hostname:
        spec["hostname"] = check_hostname(cs.hostname)


def _has_key(env: Sequence[str], key: str) -> bool:
    return any(item.split("=", 1)[0] == key for item in env)


def build_spec(
    *,
    namespace: str,
    container_id: str,
    image_config: dict[str, Any],
    container_spec: Optional[ContainerSpec] = None,
    rootfs: Optional[RootfsFiles] = None,
    resolv_conf_path: str = "",
    image_name: str = "",
) -> dict[str, Any]:
    """The full spec: default, then image config, then *container_spec*; checks it can run."""
    cs = container_spec or ContainerSpec()
    files = rootfs or NoRootfs()
    spec = default_spec(namespace, container_id)
    spec["hostname"] = default_hostname(container_id)
    apply_image_config(spec, image_config, files)
    apply_container_spec(spec, cs, files, resolv_conf_path=resolv_conf_path)
    apply_limits(spec, cs.limits)
    if not spec["process"]["args"]:
        raise errors.InvalidArgument(
            f"nothing to run in container {container_id!r}: image {image_name or '(unknown)'} has no "
            "Entrypoint or Cmd",
            hint="give ContainerSpec(cmd=[...])",
        )
    return spec


# --------------------------------------------------------------------------- exec processes


@dataclass
class ExecProcessOptions:
    args: list[str]
    env: list[str] = field(default_factory=list)
    work_dir: str = ""
    terminal: bool = False
    user: Optional[UserIds] = None


def exec_process(container_process: dict[str, Any], opts: ExecProcessOptions) -> dict[str, Any]:
    """An exec's OCI process: the container's process with args, env, cwd, terminal and user applied."""
    process = copy.deepcopy(container_process)
    process["args"] = list(opts.args)
    env = merge_env(process.get("env") or [], _check_env(opts.env))
    process["terminal"] = bool(opts.terminal)
    if opts.terminal and not _has_key(env, "TERM"):
        env.append("TERM=xterm")
    process["env"] = env
    if opts.work_dir:
        process["cwd"] = _absolute(opts.work_dir, "work_dir")
    if opts.user is not None:
        process["user"] = opts.user.to_oci()
    process.pop("consoleSize", None)
    return process


def to_json_bytes(doc: dict[str, Any]) -> bytes:
    """Compact JSON, as the value of the ``Any`` containerd stores."""
    return json.dumps(doc, separators=(",", ":")).encode()


__all__ = [
    "CONTAINER_RESOLV_CONF",
    "CONTAINER_RESOLV_CONF_NAME",
    "DEFAULT_CAPABILITIES",
    "DirRootfs",
    "ExecProcessOptions",
    "NoRootfs",
    "RootfsFiles",
    "UserIds",
    "apply_container_spec",
    "apply_image_config",
    "build_spec",
    "default_spec",
    "exec_process",
    "merge_env",
    "oci_mount",
    "parse_group",
    "parse_passwd",
    "resolv_conf_text",
    "resolve_user",
]
