"""Carry the host's DNS settings and timezone into a container.

``resolve_conf_source(data_dir)`` picks the file to bind-mount as the container's
``/etc/resolv.conf``; ``timezone_spec()`` gives the mount and environment that carry the host
timezone; ``apply_host_helpers(spec, data_dir)`` applies both to a ``ContainerSpec`` as its
``host_dns`` / ``host_timezone`` flags ask.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os

from .atomicfile import write_text_atomic
from .errors import InvalidArgument
from .types import ContainerSpec, MountSpec

log = logging.getLogger(__name__)

#: systemd-resolved's list of the real upstream servers (its /etc/resolv.conf stub points at 127.0.0.53).
RESOLVED_CONF = "/run/systemd/resolve/resolv.conf"
HOST_RESOLV_CONF = "/etc/resolv.conf"
HOST_LOCALTIME = "/etc/localtime"
HOST_TIMEZONE_FILE = "/etc/timezone"
#: Used only when the host lists no nameserver a container can reach (Docker does the same).
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
FALLBACK_RESOLV_CONF_NAME = "resolv.conf"

CONTAINER_RESOLV_CONF = "/etc/resolv.conf"
CONTAINER_LOCALTIME = "/etc/localtime"
_READ_ONLY_BIND = ["rbind", "ro"]


def _reachable_from_container(nameserver: str) -> bool:
    """Loopback resolvers (systemd-resolved's 127.0.0.53, dnsmasq on ::1) live in the host's netns only."""
    try:
        return not ipaddress.ip_address(nameserver.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def fallback_resolv_conf(host_text: str) -> str:
    """The host's resolv.conf with unreachable (loopback) nameservers dropped; public ones if none remain."""
    kept: list[str] = []
    nameservers = 0
    for line in host_text.splitlines():
        words = line.split()
        if words and words[0] == "nameserver":
            if len(words) < 2 or not _reachable_from_container(words[1]):
                continue
            nameservers += 1
        kept.append(line)
    if nameservers == 0:
        kept.extend(f"nameserver {ns}" for ns in FALLBACK_NAMESERVERS)
    return "\n".join(kept).strip("\n") + "\n"


def _write_if_changed(path: str, text: str) -> None:
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.read() == text:
                return
    except OSError:
        pass
    write_text_atomic(path, text)


def resolve_conf_source(
    data_dir: str,
    *,
    resolved_conf: str = RESOLVED_CONF,
    host_resolv_conf: str = HOST_RESOLV_CONF,
) -> str:
    """The host path to bind-mount as a container's /etc/resolv.conf.

    systemd-resolved's upstream list when it exists; otherwise ``<data_dir>/resolv.conf``, written
    from the host's /etc/resolv.conf without loopback nameservers (a container cannot reach those),
    falling back to public resolvers when the host lists none a container can use.
    """
    if not data_dir:
        raise InvalidArgument("resolve_conf_source: data_dir is empty",
                              hint="pass the directory where ctr-magic may write a fallback resolv.conf")
    if os.path.isfile(resolved_conf):
        return resolved_conf
    try:
        with open(host_resolv_conf, encoding="utf-8", errors="replace") as fh:
            host_text = fh.read()
    except OSError as exc:
        log.info("cannot read %s (%s); using public nameservers", host_resolv_conf, exc)
        host_text = ""
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(os.path.abspath(data_dir), FALLBACK_RESOLV_CONF_NAME)
    _write_if_changed(path, fallback_resolv_conf(host_text))
    return path


def host_timezone_name(
    *, localtime: str = HOST_LOCALTIME, timezone_file: str = HOST_TIMEZONE_FILE
) -> str:
    """The host's zone name (``Europe/Berlin``): $TZ, else /etc/timezone, else the /etc/localtime link."""
    env = os.environ.get("TZ", "").strip().lstrip(":")
    if env and not env.startswith("/"):  # a path (":/etc/localtime") names no zone
        return env
    try:
        with open(timezone_file, encoding="utf-8") as fh:
            name = fh.read().strip()
        if name:
            return name
    except OSError:
        pass
    try:
        target = os.readlink(localtime)
    except OSError:
        return ""
    marker = "zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else ""


def timezone_spec(
    *, localtime: str = HOST_LOCALTIME, timezone_file: str = HOST_TIMEZONE_FILE
) -> tuple[list[MountSpec], list[str]]:
    """Mounts and env vars that carry the host timezone into a container.

    A read-only bind mount of the host's /etc/localtime (its resolved file, so a symlink into
    /usr/share/zoneinfo works in images without tzdata) and ``TZ=<zone name>`` when the zone is known.
    Returns ``([], [])`` on a host without /etc/localtime and no known zone.
    """
    mounts: list[MountSpec] = []
    source = os.path.realpath(localtime)
    if os.path.isfile(source):
        mounts.append(MountSpec(destination=CONTAINER_LOCALTIME, type="bind", source=source,
                                options=list(_READ_ONLY_BIND)))
    name = host_timezone_name(localtime=localtime, timezone_file=timezone_file)
    env = [f"TZ={name}"] if name else []
    return mounts, env


def _has_mount(spec: ContainerSpec, destination: str) -> bool:
    return any(os.path.normpath(m.destination) == destination for m in spec.mounts)


def apply_host_helpers(spec: ContainerSpec, data_dir: str) -> ContainerSpec:
    """A copy of *spec* with host DNS and timezone applied as its flags ask.

    What the caller set explicitly wins: an explicit ``dns`` list or a mount on /etc/resolv.conf
    turns ``host_dns`` off; a ``TZ=`` in ``env`` or a mount on /etc/localtime keeps that part.
    """
    out = dataclasses.replace(spec, mounts=list(spec.mounts), env=list(spec.env))
    if spec.host_dns and not spec.dns and not _has_mount(spec, CONTAINER_RESOLV_CONF):
        source = resolve_conf_source(data_dir)
        out.mounts.append(MountSpec(destination=CONTAINER_RESOLV_CONF, type="bind", source=source,
                                    options=list(_READ_ONLY_BIND)))
    if spec.host_timezone:
        mounts, env = timezone_spec()
        if not _has_mount(spec, CONTAINER_LOCALTIME):
            out.mounts.extend(mounts)
        if not any(item.startswith("TZ=") for item in spec.env):
            out.env.extend(env)
    return out


__all__ = [
    "FALLBACK_NAMESERVERS",
    "RESOLVED_CONF",
    "apply_host_helpers",
    "fallback_resolv_conf",
    "host_timezone_name",
    "resolve_conf_source",
    "timezone_spec",
]
