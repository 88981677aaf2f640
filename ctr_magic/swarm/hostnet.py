"""The test cluster's private network: one Linux bridge, one network namespace per node.

Every address lives on the bridge the cluster creates (a /24 inside 10.214.0.0/16 that no route
or address on the host uses yet); a node reaches the others and the host's end of the bridge
(the registry) and nothing else: no default route, no NAT.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import random
import subprocess
from dataclasses import dataclass

from .. import errors

log = logging.getLogger(__name__)

CLUSTER_SUPERNET = ipaddress.ip_network("10.214.0.0/16")
NETNS_DIR = "/run/netns"


def ip(*args: str, netns: str = "", check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS`` (inside *netns* when given); a failure is one CtrError line."""
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    if check and proc.returncode != 0:
        raise errors.CtrError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host has a route or an address in (all namespaces' bridges show here)."""
    used: list[ipaddress.IPv4Network] = []
    for entry in json.loads(ip("-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        dst = entry.get("dst", "")
        if dst and dst != "default":
            try:
                used.append(ipaddress.ip_network(dst, strict=False))  # type: ignore[arg-type]
            except ValueError:
                continue
    for link in json.loads(ip("-j", "-4", "addr").stdout or "[]"):
        for addr in link.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{addr['local']}/{addr.get('prefixlen', 32)}", strict=False))  # type: ignore[arg-type]
    return used


def free_subnet(rng: random.Random | None = None) -> ipaddress.IPv4Network:
    """A /24 of 10.214.0.0/16 that overlaps nothing the host routes or owns, picked at random."""
    rng = rng or random.Random()
    used = _used_networks()
    candidates = list(CLUSTER_SUPERNET.subnets(new_prefix=24))
    rng.shuffle(candidates)
    for net in candidates:
        if not any(net.overlaps(u) for u in used):
            return net
    raise errors.Unavailable(f"no free /24 left in {CLUSTER_SUPERNET}", hint="ctr-magic down the clusters left running")


@dataclass(frozen=True)
class NodeLink:
    """One node's place on the bridge: its namespace, its veth (host end) and address."""

    netns: str
    veth: str
    address: str


def create_bridge(name: str, gateway: str, prefix: int) -> None:
    ip("link", "add", name, "type", "bridge")
    ip("addr", "add", f"{gateway}/{prefix}", "dev", name)
    ip("link", "set", name, "up")


def create_node_netns(link: NodeLink, bridge: str, prefix: int) -> None:
    """A namespace with lo, and ``eth0`` (one end of a veth pair whose other end is on the bridge)."""
    ip("netns", "add", link.netns)
    peer = link.veth + "p"
    ip("link", "add", link.veth, "type", "veth", "peer", "name", peer)
    ip("link", "set", peer, "netns", link.netns)
    ip("link", "set", link.veth, "master", bridge)
    ip("link", "set", link.veth, "up")
    ip("link", "set", "lo", "up", netns=link.netns)
    ip("link", "set", peer, "name", "eth0", netns=link.netns)
    ip("addr", "add", f"{link.address}/{prefix}", "dev", "eth0", netns=link.netns)
    ip("link", "set", "eth0", "up", netns=link.netns)


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(netns_path(name)).st_ino
    except OSError:
        return None


def delete_netns(name: str) -> None:
    if os.path.exists(netns_path(name)):
        ip("netns", "del", name, check=False)


def delete_link(name: str) -> None:
    if os.path.exists(f"/sys/class/net/{name}"):
        ip("link", "del", name, check=False)


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


__all__ = [
    "CLUSTER_SUPERNET",
    "NodeLink",
    "create_bridge",
    "create_node_netns",
    "delete_link",
    "delete_netns",
    "free_subnet",
    "ip",
    "link_exists",
    "netns_inode",
    "netns_path",
]
