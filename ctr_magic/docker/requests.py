"""Request bodies for the Engine API built from the contract's types (container create, mounts)."""

from __future__ import annotations

import os
import re
import signal as _signal
from typing import Any

from .. import errors
from ..hosthelpers import timezone_spec
from ..types import CreateContainerRequest, ExecTaskRequest, MountSpec
from . import limits

_SIZE_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def require(value: str, what: str, hint: str = "") -> None:
    if not value or not str(value).strip():
        raise errors.InvalidArgument(f"{what} is empty", hint=hint)


def create_body(req: CreateContainerRequest, image: str) -> dict[str, Any]:
    """The Engine API's container-create body for *req* (*image* normalised)."""
    spec = req.spec
    env = list(spec.env)
    mounts = [mount_body(m) for m in spec.mounts]
    if spec.host_timezone:
        tz_mounts, tz_env = timezone_spec()
        taken = {os.path.normpath(m.destination) for m in spec.mounts}
        mounts.extend(mount_body(m) for m in tz_mounts if os.path.normpath(m.destination) not in taken)
        if not any(e.startswith("TZ=") for e in env):
            env.extend(tz_env)
    host: dict[str, Any] = {"Mounts": mounts}
    if spec.dns:
        host["Dns"] = list(spec.dns)
    host.update(limits.host_config(spec.limits))
    body: dict[str, Any] = {
        "Image": image,
        "Labels": dict(req.labels),
        "Tty": bool(spec.tty),
        "OpenStdin": bool(spec.stdin),
        "StdinOnce": bool(spec.stdin),  # the attach that feeds it ends the input
        "AttachStdin": bool(spec.stdin),
        "AttachStdout": False,
        "AttachStderr": False,
        "HostConfig": host,
    }
    hostname = spec.hostname or (req.id if len(req.id) <= 63 else "")
    if hostname:
        body["Hostname"] = hostname
    if spec.cmd:
        body["Entrypoint"] = list(spec.cmd[:1])
        body["Cmd"] = list(spec.cmd[1:])
    if env:
        body["Env"] = env
    if spec.work_dir:
        body["WorkingDir"] = spec.work_dir
    if spec.user:
        body["User"] = spec.user
    # host_dns: Docker gives every container the host's resolv.conf already.
    return body


def mount_body(m: MountSpec) -> dict[str, Any]:
    require(m.destination, "mount destination", "every mount needs an absolute destination path")
    opts = set(m.options)
    read_only = bool(opts & {"ro", "readonly"})
    kind = m.type or "bind"
    if kind in ("bind", "rbind"):
        require(m.source, f"source of the bind mount on {m.destination}")
        out: dict[str, Any] = {"Type": "bind", "Source": m.source, "Target": m.destination, "ReadOnly": read_only}
        propagation = opts & {"private", "rprivate", "shared", "rshared", "slave", "rslave"}
        if propagation:
            out["BindOptions"] = {"Propagation": sorted(propagation)[0]}
        return out
    if kind == "tmpfs":
        out = {"Type": "tmpfs", "Target": m.destination, "ReadOnly": read_only}
        tmpfs: dict[str, Any] = {}
        for opt in opts:
            key, _, value = opt.partition("=")
            if key == "size":
                tmpfs["SizeBytes"] = _size(value, m.destination)
            elif key == "mode":
                tmpfs["Mode"] = int(value, 8)
        if tmpfs:
            out["TmpfsOptions"] = tmpfs
        return out
    if kind == "volume":
        return {"Type": "volume", "Source": m.source, "Target": m.destination, "ReadOnly": read_only}
    raise errors.InvalidArgument(
        f"mount type {kind!r} on {m.destination} is not supported by the Docker backend",
        hint="use bind, tmpfs or volume",
    )


def _size(value: str, where: str) -> int:
    match = re.fullmatch(r"(\d+)([kmg]?)b?", value.strip().lower())
    if not match:
        raise errors.InvalidArgument(f"tmpfs size {value!r} on {where} is not a size", hint="e.g. size=64m")
    return int(match.group(1)) * _SIZE_SUFFIX[match.group(2)]


def exec_body(req: ExecTaskRequest, *, attach_stdin: bool) -> dict[str, Any]:
    """The Engine API's exec-create body for *req*."""
    body: dict[str, Any] = {
        "Cmd": [str(a) for a in req.args],
        "AttachStdin": attach_stdin,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": bool(req.terminal),
    }
    if req.env:
        body["Env"] = list(req.env)
    if req.work_dir:
        body["WorkingDir"] = req.work_dir
    if req.user:
        body["User"] = req.user
    return body


def signal_name(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return str(sig)


__all__ = ["create_body", "exec_body", "mount_body", "require", "signal_name"]
