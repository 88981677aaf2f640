"""CNI networking of DefaultService: attach a running task's network namespace to CNI networks.

``setup_network`` runs the plugins of every network config in the conf dir (ADD, in file order,
interfaces eth0, eth1...) against the task's network namespace; ``remove_network`` runs DEL in
reverse. The namespace is pinned with a bind mount for as long as it is attached, so DEL can
still remove the veth, the IP allocation and any masquerading rules after the task has exited.
Plugin results are kept on disk (``<data>/<namespace>/networks/<container>/``), so removal works
from another Python process and ``container_ip(id)`` can report the address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
from typing import Any, Optional

from .. import errors
from ..atomicfile import write_text_atomic
from ..cni import (
    CNI_VERSION,
    Attachment,
    AttachmentRecord,
    CNIRunner,
    NetworkConfig,
    ResultStore,
    load_network_configs,
)
from ..constants import (
    CNI_BIN_DIRS,
    CNI_SUBDIR,
    DEFAULT_BRIDGE,
    DEFAULT_CNI_BIN_DIR,
    DEFAULT_NETWORK_NAME,
    DEFAULT_SUBNET,
    NETWORK_STATE_SUBDIR,
)
from ..hostmount import bind_mount, is_mount_point, unmount
from ..types import NetworkSetupRequest
from .pb import task_pb2
from .runtime_base import Runtime, check_id, default_data_dir

log = logging.getLogger(__name__)

PIN_FILE = "netns"
IPAM_SUBDIR = "ipam"
CONF_SUBDIR = "net.d"
_LIVE = (task_pb2.CREATED, task_pb2.RUNNING, task_pb2.PAUSED)
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def default_ipam_dir(data_dir: str = "") -> str:
    """Where host-local keeps the default network's IP allocations: ``<data>/cni/ipam``.

    Under ctr-magic's data directory (*data_dir*, else :func:`default_data_dir`), so the
    allocations go with it, never in the host's /var/lib/cni.
    """
    return os.path.join(os.path.abspath(data_dir or default_data_dir()), CNI_SUBDIR, IPAM_SUBDIR)


def default_network_config(
    *,
    name: str = DEFAULT_NETWORK_NAME,
    bridge: str = DEFAULT_BRIDGE,
    subnet: str = DEFAULT_SUBNET,
    ip_masq: bool = True,
    ipam_data_dir: Optional[str] = None,
) -> dict[str, Any]:
    """A bridge network (host-local IPAM, the bridge as gateway) plus loopback, as a conflist dict.

    ``ipam_data_dir`` is where host-local records the allocations (default :func:`default_ipam_dir`).
    """
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as exc:
        raise errors.InvalidArgument(f"subnet {subnet!r} is not a network address ({exc})",
                                     hint="e.g. 10.213.0.0/24") from None
    if net.num_addresses < 4:
        raise errors.InvalidArgument(f"subnet {subnet} is too small for a gateway and containers")
    if not _IFNAME_RE.match(bridge):
        raise errors.InvalidArgument(f"bridge name {bridge!r} is not a valid interface name",
                                     hint="at most 15 letters, digits, '.', '_' or '-'")
    ipam: dict[str, Any] = {
        "type": "host-local",
        "ranges": [[{"subnet": str(net)}]],
        "routes": [{"dst": "0.0.0.0/0" if net.version == 4 else "::/0"}],
        "dataDir": os.path.abspath(ipam_data_dir or default_ipam_dir()),
    }
    conflist = {
        "cniVersion": CNI_VERSION,
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": ip_masq, "hairpinMode": True,
             "ipam": ipam},
            {"type": "loopback"},
        ],
    }
    NetworkConfig.from_dict(conflist)  # the same checks a loaded file gets
    return conflist


def network_config_path(conf_dir: str, name: str = DEFAULT_NETWORK_NAME) -> str:
    """The file write_default_network_config writes: ``<conf_dir>/10-<name>.conflist``."""
    return os.path.join(conf_dir, f"10-{name}.conflist")


def write_default_network_config(
    conf_dir: str,
    *,
    name: str = DEFAULT_NETWORK_NAME,
    bridge: str = DEFAULT_BRIDGE,
    subnet: str = DEFAULT_SUBNET,
    ip_masq: bool = True,
    ipam_data_dir: Optional[str] = None,
) -> str:
    """Write ``<conf_dir>/10-<name>.conflist`` (bridge + host-local IPAM + loopback); returns its path.

    ``ip_masq`` NATs the containers' outgoing traffic so they reach beyond the host;
    ``ipam_data_dir`` is where host-local keeps the allocations (default :func:`default_ipam_dir`).
    """
    if not conf_dir:
        raise errors.InvalidArgument("write_default_network_config: conf_dir is empty")
    conflist = default_network_config(name=name, bridge=bridge, subnet=subnet, ip_masq=ip_masq,
                                      ipam_data_dir=ipam_data_dir)
    os.makedirs(conf_dir, exist_ok=True)
    path = network_config_path(conf_dir, name)
    write_text_atomic(path, json.dumps(conflist, indent=2) + "\n")
    log.info("wrote CNI network %s (bridge %s, subnet %s) to %s", name, bridge, subnet, path)
    return path


def _host_local_without_data_dir(network: NetworkConfig) -> bool:
    """True when host-local would keep this network's allocations in the host's /var/lib/cni."""
    return any(isinstance(p.get("ipam"), dict) and p["ipam"].get("type") == "host-local"
               and not p["ipam"].get("dataDir") for p in network.plugins)


def plugin_dirs(requested: str) -> list[str]:
    """The directories to search for plugins: the one asked for, or every known one for the default."""
    if requested and requested != DEFAULT_CNI_BIN_DIR:
        return [requested]
    return [d for d in CNI_BIN_DIRS if os.path.isdir(d)] or [DEFAULT_CNI_BIN_DIR]


class NetworkPart:
    """setup_network / remove_network of the contract, plus container_ip and the default network."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    # -- places ------------------------------------------------------------------------------------
    def network_store(self) -> ResultStore:
        return ResultStore(os.path.join(self.runtime.data_root(), self.runtime.namespace, NETWORK_STATE_SUBDIR))

    def default_cni_conf_dir(self) -> str:
        return os.path.join(self.runtime.data_root(), CNI_SUBDIR, CONF_SUBDIR)

    def write_default_network_config(self, conf_dir: str = "", **options: Any) -> str:
        """:func:`write_default_network_config` with this service's defaults: ctr-magic's own conf dir,
        and the IPAM allocations under its data directory."""
        options.setdefault("ipam_data_dir", default_ipam_dir(self.runtime.data_root()))
        return write_default_network_config(conf_dir or self.default_cni_conf_dir(), **options)

    def ensure_default_network(self) -> str:
        """ctr-magic's own conf dir, with the default bridge network written there when it holds none.

        A default network written without an IPAM directory (by an older version) is rewritten, so
        its allocations move under the data directory; attachments made before keep their config.
        """
        conf_dir = self.default_cni_conf_dir()
        networks = load_network_configs(conf_dir) if os.path.isdir(conf_dir) else []
        ours = network_config_path(conf_dir)
        if not networks:
            self.write_default_network_config(conf_dir)
        elif any(n.source == ours and _host_local_without_data_dir(n) for n in networks):
            log.warning("%s keeps IP allocations in /var/lib/cni: rewriting it to use %s", ours,
                        default_ipam_dir(self.runtime.data_root()))
            self.write_default_network_config(conf_dir)
        return conf_dir

    def _cni_container_id(self, container_id: str) -> str:
        # host-local keys allocations by container id: qualify it so namespaces cannot collide.
        return f"{self.runtime.namespace}-{container_id}"

    def _networks(self, req: NetworkSetupRequest) -> list[NetworkConfig]:
        conf_dir = req.cni_conf_dir or self.ensure_default_network()
        networks = load_network_configs(conf_dir)
        if not networks:
            raise errors.NotFound(f"no CNI network config (*.conflist, *.conf) in {conf_dir}",
                                  hint="write one with write_default_network_config(conf_dir)")
        return networks

    # -- task ------------------------------------------------------------------------------------------
    def _live_task_pid(self, container_id: str) -> int:
        process = self.runtime.task_process(container_id)
        if process is None:
            raise errors.FailedPrecondition(f"network setup for container {container_id!r}: it has no task",
                                            hint="start it first (start_container)")
        if process.status not in _LIVE or not process.pid:
            state = task_pb2.Status.Name(process.status).lower()
            raise errors.FailedPrecondition(
                f"network setup for container {container_id!r}: its task is {state}, not running",
                hint="start it first (start_container)")
        return int(process.pid)

    # -- the contract ------------------------------------------------------------------------------
    def setup_network(self, req: NetworkSetupRequest) -> None:
        """Attach the container's running task to every CNI network in ``req.cni_conf_dir``.

        With no conf dir, ctr-magic's own (``<data>/cni/net.d``) is used, and the default bridge
        network is written there first if it holds none. Setting up an attached container again
        is a no-op; a record left from an earlier task is removed first.
        """
        if req is None or not req.container_id:
            raise errors.InvalidArgument("setup_network: container_id is required")
        container_id = check_id(req.container_id)
        self.runtime.container_record(container_id)
        pid = self._live_task_pid(container_id)
        netns = f"/proc/{pid}/ns/net"
        try:
            inode = os.stat(netns).st_ino
        except FileNotFoundError:
            raise errors.FailedPrecondition(f"network setup for container {container_id!r}: its task "
                                            f"(pid {pid}) has exited", hint="start it again") from None
        if inode == os.stat("/proc/self/ns/net").st_ino:
            raise errors.FailedPrecondition(
                f"container {container_id!r} shares the host's network namespace; CNI would configure the host")
        networks = self._networks(req)
        runner = CNIRunner(plugin_dirs(req.cni_bin_dir))
        runner.check(networks)
        store = self.network_store()
        with store.locked():
            records = store.load(container_id)
            if records and all(r.pid == pid and r.netns_inode == inode for r in records):
                log.info("container %s is already attached to %s", container_id,
                         ", ".join(r.network.name for r in records))
                return
            if records:
                log.info("container %s: removing networks left from an earlier task", container_id)
                self._detach(container_id, records, store, runner)
            self._attach(container_id, pid, netns, inode, networks, store=store, runner=runner)

    def _attach(self, container_id: str, pid: int, netns: str, inode: int, networks: list[NetworkConfig],
                *, store: ResultStore, runner: CNIRunner) -> None:
        pin = self._pin_netns(store, container_id, netns)
        done: list[AttachmentRecord] = []
        try:
            for index, network in enumerate(networks):
                att = Attachment(self._cni_container_id(container_id), pin, f"eth{index}")
                result = runner.add_network(network, att)
                record = AttachmentRecord(index, network, att, result, inode, pid,
                                          extra={"bin_dirs": runner.bin_dirs})
                store.save(container_id, record)
                done.append(record)
                log.info("container %s joined network %s as %s (%s)", container_id, network.name, att.ifname,
                         ", ".join(record.addresses(4) + record.addresses(6)) or "no address")
        except BaseException:
            for record in reversed(done):
                try:
                    runner.del_network(record.network, record.attachment, record.result)
                except Exception:  # the ADD failure is the error to report
                    log.warning("undoing network %s of %s", record.network.name, container_id, exc_info=True)
                store.discard(container_id, record)
            self._unpin_netns(store, container_id)
            raise

    def remove_network(self, req: NetworkSetupRequest) -> None:
        """Detach the container from every network setup_network attached it to (idempotent).

        Works after the task has exited and from a new process: what to undo is read from disk.
        """
        if req is None or not req.container_id:
            raise errors.InvalidArgument("remove_network: container_id is required")
        container_id = check_id(req.container_id)
        store = self.network_store()
        if not os.path.isdir(store.container_dir(container_id)):
            return  # never attached (or removed already): nothing to undo, nothing to write
        with store.locked():
            records = store.load(container_id)
            if records:
                bin_dirs = records[0].extra.get("bin_dirs") or plugin_dirs(req.cni_bin_dir)
                self._detach(container_id, records, store, CNIRunner(bin_dirs))
            else:
                self._unpin_netns(store, container_id)

    def _detach(self, container_id: str, records: list[AttachmentRecord], store: ResultStore,
                runner: CNIRunner) -> None:
        pin = self._pin_path(store, container_id)
        netns = pin if is_mount_point(pin) else ""  # "" tells plugins the namespace is gone
        first: Optional[errors.CtrError] = None
        for record in reversed(records):
            att = Attachment(record.attachment.container_id, netns, record.attachment.ifname)
            try:
                runner.del_network(record.network, att, record.result)
            except errors.CtrError as exc:
                first = first or exc
                continue  # keep its record: remove_network can be retried
            store.discard(container_id, record)
            log.info("container %s left network %s", container_id, record.network.name)
        if first is not None:
            raise first
        self._unpin_netns(store, container_id)

    # -- pinned namespace ------------------------------------------------------------------------
    def _pin_path(self, store: ResultStore, container_id: str) -> str:
        return os.path.join(store.container_dir(container_id), PIN_FILE)

    def _pin_netns(self, store: ResultStore, container_id: str, netns: str) -> str:
        pin = self._pin_path(store, container_id)
        os.makedirs(os.path.dirname(pin), exist_ok=True)
        if is_mount_point(pin):
            unmount(pin)
        with open(pin, "w"):
            pass
        try:
            bind_mount(netns, pin, what=f"pinning the network namespace of container {container_id}")
        except BaseException:
            os.unlink(pin)
            store.remove_dir(container_id)
            raise
        return pin

    def _unpin_netns(self, store: ResultStore, container_id: str) -> None:
        pin = self._pin_path(store, container_id)
        unmount(pin)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pin)
        store.remove_dir(container_id)

    # -- addresses ---------------------------------------------------------------------------------
    def container_ip(self, id: str) -> str:
        """The container's first IPv4 address on a CNI network ("" when it is not attached)."""
        check_id(id)
        for record in self.network_store().load(id):
            addresses = record.addresses(4) or record.addresses(6)
            if addresses:
                return addresses[0]
        return ""

    def container_ips(self) -> dict[str, str]:
        """container id -> IP for every attached container of this namespace (for listings)."""
        store = self.network_store()
        out = {}
        for container_id in store.containers():
            try:
                ip = self.container_ip(container_id)
            except errors.InvalidArgument:
                continue
            if ip:
                out[container_id] = ip
        return out

    def has_network(self, container_id: str) -> bool:
        """True when setup_network attached *container_id* and remove_network has not run yet."""
        return bool(self.network_store().load(check_id(container_id)))


__all__ = ["NetworkPart", "default_ipam_dir", "default_network_config", "network_config_path",
           "write_default_network_config"]
