"""A local Swarm test cluster: N dockerd nodes, each in its own network namespace, one manager.

``SwarmCluster(base_dir).up(3)`` creates a bridge with a /24 of its own (inside 10.214.0.0/16,
free on this host), one network namespace per node wired to it by a veth pair, a registry on the
host's end of the bridge (every node can pull from it), and starts in each namespace

    nsenter --net=/run/netns/NS unshare --uts -- dockerd --data-root … --exec-root … -H unix://…

(``ip netns exec`` would remount /sys and hide the cgroups from dockerd; the UTS namespace gives
each node its own host name, which Swarm reports as the node's name). Node 1 runs ``swarm init``,
the others join as workers, and every node is labelled with its engine endpoint
(``ctr-magic.engine``) so :class:`~ctr_magic.swarm.service.SwarmService` finds it.

``down()`` stops the daemons, kills what they leave (shims, containers), unmounts their roots,
deletes the namespaces, veths and bridge and stops the registry: nothing of the cluster remains.
State lives in ``<base_dir>/swarm.json`` so ``status()``/``down()`` work from any process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from .. import errors
from ..constants import ENV_HOME
from . import hostnet, hostops
from .nodes import ENGINE_LABEL

log = logging.getLogger(__name__)

STATE_FILE = "swarm.json"
DEFAULT_HOME = "/var/lib/ctr-magic"
RUN_ROOT = "/run/ctr-magic"
REGISTRY_PORT = 5000
SWARM_PORT = 2377
#: Seconds between a worker's heartbeats: short, so a dead node is noticed within seconds.
HEARTBEAT_SECONDS = 2


@dataclass(frozen=True)
class ClusterNode:
    name: str
    role: str  # "manager" or "worker"
    netns: str
    veth: str
    address: str
    socket: str
    data_root: str
    exec_root: str
    pid: int = 0

    @property
    def engine(self) -> str:
        return f"unix://{self.socket}"


@dataclass(frozen=True)
class ClusterInfo:
    """Where the running cluster can be reached."""

    base_dir: str
    run_dir: str
    bridge: str
    subnet: str
    gateway: str
    registry_addr: str
    registry_pid: int
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def manager_socket(self) -> str:
        return next(n.socket for n in self.nodes if n.role == "manager")

    @property
    def node_endpoints(self) -> dict[str, str]:
        return {n.name: n.engine for n in self.nodes}

    def node(self, name: str) -> ClusterNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise errors.NotFound(f"node {name} is not part of the cluster in {self.base_dir}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterInfo:
        nodes = [ClusterNode(**n) for n in data.pop("nodes", [])]
        return cls(**data, nodes=nodes)


def _binary(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin")
    if not found:
        raise errors.Unavailable(f"{name} not found",
                                 hint="apt-get install docker.io docker-registry util-linux iproute2")
    return found


def default_cluster_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """``<home>/swarm``: home is given, else $CTR_MAGIC_HOME, else /var/lib/ctr-magic."""
    base = home or os.environ.get(ENV_HOME) or DEFAULT_HOME
    return Path(base).absolute() / "swarm"


class SwarmCluster:
    """A private Swarm cluster living under *base_dir* (sockets under /run/ctr-magic/sw-<hash>/)."""

    def __init__(self, base_dir: str | os.PathLike[str], *, start_timeout: float = 180.0) -> None:
        self.base_dir = Path(base_dir).absolute()
        digest = hashlib.sha256(str(self.base_dir).encode()).hexdigest()[:10]
        self.run_dir = Path(RUN_ROOT) / f"sw-{digest}"
        self.start_timeout = start_timeout

    @property
    def state_file(self) -> Path:
        return self.base_dir / STATE_FILE

    # -- state ----------------------------------------------------------------------------------
    def status(self) -> Optional[ClusterInfo]:
        """The running cluster, or None (no state, or its manager's dockerd is gone)."""
        try:
            info = ClusterInfo.from_dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        manager = next((n for n in info.nodes if n.role == "manager"), None)
        if manager is None or not hostops.alive(manager.pid):
            return None
        return info

    def _write_state(self, info: ClusterInfo) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info.to_dict(), indent=2) + "\n")
        os.replace(tmp, self.state_file)

    # -- up -------------------------------------------------------------------------------------
    def up(self, n: int = 3) -> ClusterInfo:
        """Start *n* nodes (1 manager, n-1 workers) and the registry; a running cluster is reused."""
        if n < 1:
            raise errors.InvalidArgument(f"a swarm needs at least 1 node, not {n}", hint="e.g. --swarm 3")
        running = self.status()
        if running is not None:
            return running
        if self.state_file.exists():
            self.down()  # a cluster that half-died: clear it before starting again
        for name in ("ip", "nsenter", "unshare", "dockerd", "docker-registry"):
            _binary(name)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        info = self._plan(n)
        self._write_state(info)  # from here on, down() knows what to remove
        try:
            hostnet.create_bridge(info.bridge, info.gateway, 24)
            for node in info.nodes:
                hostnet.create_node_netns(hostnet.NodeLink(node.netns, node.veth, node.address), info.bridge, 24)
            info = self._start_registry(info)
            self._write_state(info)
            info = self._start_nodes(info)
            self._write_state(info)
            self._form_swarm(info)
        except BaseException:
            log.warning("cluster start failed; removing what was made", exc_info=True)
            with contextlib.suppress(Exception):
                self.down()
            raise
        return info

    def _plan(self, n: int) -> ClusterInfo:
        subnet = hostnet.free_subnet()
        hosts = list(subnet.hosts())
        tag = secrets.token_hex(3)
        nodes = []
        for i in range(1, n + 1):
            root = self.run_dir / f"n{i}"
            nodes.append(ClusterNode(
                name=f"node{i}",
                role="manager" if i == 1 else "worker",
                netns=f"ctr-magic-{tag}-n{i}",
                veth=f"cmsw{tag}v{i}",
                address=str(hosts[10 + i]),
                socket=str(self.run_dir / f"n{i}.sock"),
                data_root=str(self.base_dir / "nodes" / f"n{i}"),
                exec_root=str(root),
            ))  # fmt: skip
        gateway = str(hosts[0])
        return ClusterInfo(
            base_dir=str(self.base_dir),
            run_dir=str(self.run_dir),
            bridge=f"cmsw{tag}",
            subnet=str(subnet),
            gateway=gateway,
            registry_addr=f"{gateway}:{REGISTRY_PORT}",
            registry_pid=0,
            nodes=nodes,
        )

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log_dir = self.base_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / log_name, "ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            out.flush()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "REGISTRY_", "CONTAINERD_"))}
            env.pop("NOTIFY_SOCKET", None)
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    cwd=self.base_dir, start_new_session=True)

    def _log_tail(self, log_name: str, lines: int = 8) -> str:
        try:
            text = (self.base_dir / "logs" / log_name).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def _start_registry(self, info: ClusterInfo) -> ClusterInfo:
        data = self.base_dir / "registry"
        data.mkdir(parents=True, exist_ok=True)
        config = self.base_dir / "registry.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {data}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {info.registry_addr}\n  secret: {secrets.token_hex(16)}\n"
        )
        proc = self._spawn([_binary("docker-registry"), "serve", str(config)], "registry.log")
        host, _, port = info.registry_addr.rpartition(":")

        def ready() -> bool:
            if proc.poll() is not None:
                return True
            with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1.0):
                return True
            return False

        if not hostops.wait_until(ready, 30.0) or proc.poll() is not None:
            raise errors.Unavailable(f"the cluster registry on {info.registry_addr} did not start: "
                                     f"{self._log_tail('registry.log')}")
        return ClusterInfo.from_dict({**info.to_dict(), "registry_pid": proc.pid})

    def _dockerd_argv(self, info: ClusterInfo, node: ClusterNode) -> list[str]:
        Path(node.data_root).mkdir(parents=True, exist_ok=True)
        Path(node.exec_root).mkdir(parents=True, exist_ok=True, mode=0o700)
        config = Path(node.data_root).parent / f"{node.name}.json"
        config.write_text(json.dumps({"deprecated-key-path": str(Path(node.data_root).parent / f"{node.name}.key")}))
        return [
            _binary("nsenter"), f"--net={hostnet.netns_path(node.netns)}", "--",
            _binary("unshare"), "--uts", "--",
            "/bin/sh", "-c", 'hostname "$0" && exec "$@"', node.name,
            _binary("dockerd"),
            "--data-root", node.data_root,
            "--exec-root", node.exec_root,
            "--pidfile", os.path.join(node.exec_root, "dockerd.pid"),
            "-H", node.engine,
            "--config-file", str(config),
            "--insecure-registry", info.registry_addr,
            "--userland-proxy=false",
            "--ip-masq=false",
        ]  # fmt: skip

    def _start_nodes(self, info: ClusterInfo) -> ClusterInfo:
        from ..docker.api import EngineAPI

        procs = {node.name: self._spawn(self._dockerd_argv(info, node), f"{node.name}.log") for node in info.nodes}

        def all_answer() -> bool:
            for node in info.nodes:
                if procs[node.name].poll() is not None:
                    return True
                if not os.path.exists(node.socket):
                    return False
                api = EngineAPI(node.socket, timeout=5.0)
                try:
                    api.ping(timeout=3.0)
                except errors.CtrError:
                    return False
                finally:
                    api.close()
            return True

        ok = hostops.wait_until(all_answer, self.start_timeout, interval=0.5)
        for node in info.nodes:
            proc = procs[node.name]
            if proc.poll() is not None or not ok:
                raise errors.Unavailable(
                    f"dockerd of {node.name} " + (f"exited ({proc.returncode})" if proc.poll() is not None
                                                  else f"not ready after {self.start_timeout:.0f}s")
                    + f": {self._log_tail(node.name + '.log')}")
        nodes = [ClusterNode(**{**asdict(n), "pid": procs[n.name].pid}) for n in info.nodes]
        return ClusterInfo.from_dict({**info.to_dict(), "nodes": [asdict(n) for n in nodes]})

    def _form_swarm(self, info: ClusterInfo) -> None:
        from .api import SwarmAPI

        manager = next(n for n in info.nodes if n.role == "manager")
        with SwarmAPI.connect(manager.socket) as api:
            api.swarm_init(f"{manager.address}:{SWARM_PORT}", heartbeat_seconds=HEARTBEAT_SECONDS)
            token = api.swarm_inspect()["JoinTokens"]["Worker"]
            for node in info.nodes:
                if node.role == "worker":
                    with SwarmAPI.connect(node.socket) as worker:
                        worker.swarm_join(f"{node.address}:{SWARM_PORT}", [f"{manager.address}:{SWARM_PORT}"], token)
            by_host: dict[str, dict[str, Any]] = {}

            def all_ready() -> bool:
                by_host.clear()
                by_host.update({str(n["Description"]["Hostname"]): n for n in api.nodes()})
                return (len(by_host) >= len(info.nodes)
                        and all(n["Status"]["State"] == "ready" for n in by_host.values()))

            if not hostops.wait_until(all_ready, 120.0, interval=0.5):
                raise errors.Unavailable(f"only {len(by_host)} of {len(info.nodes)} nodes joined the swarm")
            for node in info.nodes:
                api.node_label(by_host[node.name]["ID"], {ENGINE_LABEL: node.engine})
        log.info("swarm of %d nodes ready (manager %s)", len(info.nodes), manager.socket)

    # -- down -----------------------------------------------------------------------------------
    def down(self) -> None:
        """Stop everything the cluster started and remove every trace; harmless when not running."""
        try:
            info = ClusterInfo.from_dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return
        for node in info.nodes:
            if _is_dockerd(node.pid, node.data_root):
                hostops.signal_all([node.pid], signal.SIGTERM)
        for node in info.nodes:
            hostops.wait_until(lambda n=node: not _is_dockerd(n.pid, n.data_root), 40.0)
        for node in info.nodes:
            inode = hostnet.netns_inode(node.netns)
            if inode is not None:
                hostops.kill_tree(hostops.pids_in_netns(inode), node.name)
            left = hostops.unmount_all([node.data_root, node.exec_root])
            if left:
                log.warning("%s: mounts left: %s", node.name, left[:5])
            hostnet.delete_netns(node.netns)
            hostnet.delete_link(node.veth)
        if info.registry_pid and _cmdline_has(info.registry_pid, "docker-registry"):
            hostops.kill_tree([info.registry_pid], "registry")
        hostnet.delete_link(info.bridge)
        for path in [self.base_dir / "nodes", Path(info.run_dir)]:
            if not hostops.mounts_under([str(path)]):
                shutil.rmtree(path, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        log.info("cluster in %s removed", self.base_dir)

    def kill_node(self, name: str) -> None:
        """SIGKILL one node's dockerd (for failure tests); its containers keep running until down()."""
        info = self.status()
        if info is None:
            raise errors.NotFound(f"no cluster running in {self.base_dir}")
        node = info.node(name)
        if _is_dockerd(node.pid, node.data_root):
            os.kill(node.pid, signal.SIGKILL)
            hostops.wait_until(lambda: not hostops.alive(node.pid), 20.0)


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _cmdline_has(pid: int, word: str) -> bool:
    return any(word in arg for arg in _cmdline(pid)) and hostops.alive(pid)


def _is_dockerd(pid: int, data_root: str) -> bool:
    argv = _cmdline(pid)
    return bool(pid) and hostops.alive(pid) and any(a.endswith("dockerd") for a in argv) and data_root in argv


__all__ = ["ClusterInfo", "ClusterNode", "SwarmCluster", "default_cluster_dir"]
