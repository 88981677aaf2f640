"""CNI networking with the real plugins (/usr/lib/cni) and real containers.

Every test network is a bridge of our own (``cmt<hex>``) on a /24 inside 10.213.0.0/16 that no
route on this host uses; only addresses on it (and 127.0.0.1) are contacted. The bridge link is
deleted at the end.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctr_magic import errors
from ctr_magic.containerd.network import default_ipam_dir, network_config_path, write_default_network_config
from ctr_magic.containerd.service import DefaultService
from ctr_magic.env import EnvironmentInfo, cni_bin_dir
from ctr_magic.hostmount import mount_points
from ctr_magic.types import (
    ContainerSpec,
    CreateContainerRequest,
    DeleteContainerOptions,
    ExecTaskRequest,
    NetworkSetupRequest,
    StopTaskOptions,
)


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False).stdout


def _free_subnet() -> ipaddress.IPv4Network:
    used = [ipaddress.ip_network(line.split()[0], strict=False) for line in _ip("-4", "route", "show", "table", "all")
            .splitlines() if line and line.split()[0][0].isdigit()]
    for _ in range(200):
        candidate = ipaddress.ip_network(f"10.213.{secrets.randbelow(254) + 1}.0/24")
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    pytest.skip("no free /24 in 10.213.0.0/16 on this host")


@dataclass
class Net:
    name: str
    bridge: str
    subnet: ipaddress.IPv4Network
    conf_dir: str
    ipam_dir: str
    bin_dir: str

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def request(self, container_id: str) -> NetworkSetupRequest:
        return NetworkSetupRequest(container_id=container_id, cni_bin_dir=self.bin_dir, cni_conf_dir=self.conf_dir)

    def allocated(self) -> list[str]:
        """IPs host-local has handed out on this network."""
        try:
            names = os.listdir(os.path.join(self.ipam_dir, self.name))
        except FileNotFoundError:
            return []
        return [n for n in names if n[0].isdigit() and not n.startswith("last_reserved")]

    def veths(self) -> list[str]:
        return [line.split(":")[1].strip().split("@")[0] for line in _ip("-o", "link", "show", "master", self.bridge)
                .splitlines() if line]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    if os.geteuid() != 0:
        pytest.skip("CNI needs root")
    tag = secrets.token_hex(3)
    test_net = Net(name=f"cmt-{tag}", bridge=f"cmt{tag}", subnet=_free_subnet(),
                       conf_dir=str(tmp_path / "net.d"), ipam_dir=str(tmp_path / "ipam"), bin_dir=cni_bin_dir())
    write_default_network_config(test_net.conf_dir, name=test_net.name, bridge=test_net.bridge,
                                 subnet=str(test_net.subnet), ipam_data_dir=test_net.ipam_dir)
    try:
        yield test_net
    finally:
        subprocess.run(["ip", "link", "del", test_net.bridge], capture_output=True, check=False)


@pytest.fixture
def svc(environment: EnvironmentInfo, namespace: str, tmp_path: Path) -> Iterator[DefaultService]:
    """A service whose data directory (network state, pinned namespaces) is the test's tmp dir."""
    service = DefaultService.connect(environment.containerd_socket, namespace, data_dir=str(tmp_path / "data"))
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def box(svc: DefaultService, test_images: dict[str, str]) -> Iterator[str]:
    """A busybox container (created, not started)."""
    cid = f"t-{secrets.token_hex(5)}"
    svc.create_container(CreateContainerRequest(id=cid, image_ref=test_images["busybox"],
                                                spec=ContainerSpec(cmd=["sleep", "600"])))
    try:
        yield cid
    finally:
        try:
            svc.remove_network(NetworkSetupRequest(cid))
        finally:
            svc.delete_container(cid, DeleteContainerOptions(force=True))


def sh(svc: DefaultService, cid: str, script: str) -> tuple[int, str]:
    out = io.BytesIO()
    res = svc.exec_task(cid, ExecTaskRequest(args=["sh", "-c", script], stdout=out, stderr=out))
    return res.exit_code, out.getvalue().decode()


def _serve_once(address: str) -> tuple[int, threading.Thread, list[bytes]]:
    """A TCP server on *address* answering one client with 'pong'; returns (port, thread, received)."""
    server = socket.create_server((address, 0))
    server.settimeout(20)
    received: list[bytes] = []

    def run() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10)
                received.append(conn.recv(100))
                conn.sendall(b"pong\n")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return server.getsockname()[1], thread, received


def _http_get(ip: str, port: int, deadline: float) -> bytes:
    """GET / from the container, retrying until the server inside is up (or the deadline passes)."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((ip, port), timeout=2) as conn:
                conn.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                chunks = []
                while chunk := conn.recv(4096):
                    chunks.append(chunk)
                return b"".join(chunks)
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise AssertionError(f"no answer from {ip}:{port}: {last}")


def _remove_from_new_process(env: EnvironmentInfo, namespace: str, data_dir: str, cid: str) -> None:
    code = (
        "import sys\n"
        "from ctr_magic.containerd.service import DefaultService\n"
        "from ctr_magic.types import NetworkSetupRequest\n"
        "svc = DefaultService.connect(sys.argv[1], sys.argv[2], data_dir=sys.argv[3])\n"
        "svc.remove_network(NetworkSetupRequest(sys.argv[4]))\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-c", code, env.containerd_socket, namespace, data_dir, cid],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": pythonpath},
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_network_both_ways_and_clean_removal(
    svc: DefaultService, net: Net, box: str, environment: EnvironmentInfo, namespace: str, tmp_path: Path
) -> None:
    svc.start_container(box)
    svc.setup_network(net.request(box))
    ip = svc.container_ip(box)
    assert ipaddress.ip_address(ip) in net.subnet and ip != net.gateway
    assert svc.container_ips() == {box: ip}
    assert net.allocated() == [ip] and len(net.veths()) == 1
    code, out = sh(svc, box, "ip -o -4 addr show eth0; ip -o link show lo")
    assert code == 0 and f"inet {ip}/24" in out and "UP" in out.split("lo:")[1]

    svc.setup_network(net.request(box))  # already attached: nothing changes
    assert svc.container_ip(box) == ip and net.allocated() == [ip] and len(net.veths()) == 1

    # Container -> a server the test runs on the bridge's gateway address.
    port, thread, received = _serve_once(net.gateway)
    code, out = sh(svc, box, f"echo ping | nc {net.gateway} {port}")
    thread.join(10)
    assert received == [b"ping\n"] and "pong" in out, (code, out)

    # Host -> a server inside the container, at the container's IP.
    code, out = sh(svc, box, "mkdir -p /www && echo served-from-container > /www/index.html && httpd -p 8080 -h /www")
    assert code == 0, out
    reply = _http_get(ip, 8080, time.monotonic() + 20)
    assert reply.startswith(b"HTTP/1.") and b"served-from-container" in reply

    # Removal from another process: interface, IP allocation, veth and the pinned netns all go.
    data_dir = str(tmp_path / "data")
    _remove_from_new_process(environment, namespace, data_dir, box)
    assert svc.container_ip(box) == "" and svc.container_ips() == {}
    assert net.allocated() == [] and net.veths() == []
    code, out = sh(svc, box, "ip -o link show eth0")
    assert code != 0, out
    assert not [p for p in mount_points() if p.startswith(data_dir)]
    assert not os.path.exists(os.path.join(data_dir, namespace, "networks", box))
    nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True, check=False).stdout
    assert ip not in nat, "no masquerading rule is left for the container"
    svc.remove_network(net.request(box))  # idempotent


def test_container_info_shows_the_ip(svc: DefaultService, net: Net, box: str) -> None:
    assert svc.get_container(box).ip == ""
    svc.start_container(box)
    svc.setup_network(net.request(box))
    ip = svc.container_ip(box)
    assert ip and svc.get_container(box).ip == ip
    assert {c.id: c.ip for c in svc.list_containers()}[box] == ip
    svc.remove_network(net.request(box))
    assert svc.get_container(box).ip == ""


def test_delete_container_removes_its_network(svc: DefaultService, net: Net, test_images: dict[str, str],
                                              tmp_path: Path, namespace: str) -> None:
    cid = f"t-{secrets.token_hex(5)}"
    svc.create_container(CreateContainerRequest(id=cid, image_ref=test_images["busybox"],
                                                spec=ContainerSpec(cmd=["sleep", "600"])))
    try:
        svc.start_container(cid)
        svc.setup_network(net.request(cid))
        assert net.allocated() and net.veths()
        svc.delete_container(cid, DeleteContainerOptions(force=True))  # no remove_network first
        assert net.allocated() == [] and net.veths() == []
        assert svc.container_ips() == {}
        assert not [p for p in mount_points() if p.startswith(str(tmp_path))], "the pinned netns is unmounted"
        assert not (tmp_path / "data" / namespace / "networks" / cid).exists()
    finally:
        try:
            svc.remove_network(NetworkSetupRequest(cid))
        finally:
            if svc.container_exists(cid):
                svc.delete_container(cid, DeleteContainerOptions(force=True))


def test_default_network_keeps_ip_allocations_under_the_data_dir(svc: DefaultService, tmp_path: Path) -> None:
    data = tmp_path / "data"
    conf_dir = svc.ensure_default_network()
    assert conf_dir == str(data / "cni" / "net.d")
    bridge = json.loads(Path(network_config_path(conf_dir)).read_text())["plugins"][0]
    assert bridge["ipam"]["dataDir"] == str(data / "cni" / "ipam") == default_ipam_dir(str(data))

    # A default network an older version wrote (no dataDir: host-local would use /var/lib/cni) is rewritten.
    path = Path(network_config_path(conf_dir))
    legacy = json.loads(path.read_text())
    del legacy["plugins"][0]["ipam"]["dataDir"]
    path.write_text(json.dumps(legacy))
    svc.ensure_default_network()
    assert json.loads(path.read_text())["plugins"][0]["ipam"]["dataDir"] == str(data / "cni" / "ipam")

    # The service's writer puts the allocations under its data dir too, wherever the config goes.
    elsewhere = svc.write_default_network_config(str(tmp_path / "other.d"), name="other")
    assert json.loads(Path(elsewhere).read_text())["plugins"][0]["ipam"]["dataDir"] == str(data / "cni" / "ipam")
    assert sorted(os.listdir(tmp_path / "other.d")) == ["10-other.conflist"]


def test_remove_after_the_task_exited(svc: DefaultService, net: Net, box: str, tmp_path: Path) -> None:
    svc.start_container(box)
    svc.setup_network(net.request(box))
    ip = svc.container_ip(box)
    svc.stop_container(box, StopTaskOptions(timeout=0.5, force=True))
    svc.delete_task(box)
    assert svc.container_ip(box) == ip, "the address stays recorded until remove_network"
    svc.remove_network(net.request(box))
    assert net.allocated() == [] and net.veths() == []
    assert not [p for p in mount_points() if p.startswith(str(tmp_path))]


def test_new_task_gets_a_fresh_attachment(svc: DefaultService, net: Net, box: str) -> None:
    svc.start_container(box)
    svc.setup_network(net.request(box))
    svc.stop_container(box, StopTaskOptions(timeout=0.5, force=True))
    svc.start_container(box)  # a new task, a new network namespace
    svc.setup_network(net.request(box))  # the old attachment is removed first
    ip = svc.container_ip(box)
    assert net.allocated() == [ip] and len(net.veths()) == 1
    assert f"inet {ip}/" in sh(svc, box, "ip -o -4 addr show eth0")[1]


def test_setup_needs_a_running_task(svc: DefaultService, net: Net, box: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with pytest.raises(errors.FailedPrecondition, match=f"container '{box}': it has no task.*start it first"):
        svc.setup_network(net.request(box))
    svc.start_container(box)
    svc.stop_container(box, StopTaskOptions(timeout=0.5, force=True))
    with pytest.raises(errors.FailedPrecondition, match="task is stopped, not running"):
        svc.setup_network(net.request(box))
    assert net.allocated() == [] and net.veths() == []
    assert not list(data.glob("*/networks/*")) and not [p for p in mount_points() if p.startswith(str(data))]


def test_setup_bad_input(svc: DefaultService, net: Net) -> None:
    with pytest.raises(errors.InvalidArgument, match="container_id is required"):
        svc.setup_network(NetworkSetupRequest(container_id=""))
    with pytest.raises(errors.InvalidArgument, match="container_id is required"):
        svc.remove_network(NetworkSetupRequest(container_id=""))
    with pytest.raises(errors.NotFound, match="ghost-box"):
        svc.setup_network(net.request("ghost-box"))
    svc.remove_network(net.request("ghost-box"))  # nothing recorded: nothing to do


def test_failed_add_leaves_nothing(svc: DefaultService, net: Net, box: str, tmp_path: Path) -> None:
    # A second plugin that fails (a sysctl that does not exist): the bridge ADD ran and must be undone.
    conflist = json.loads(Path(net.conf_dir, f"10-{net.name}.conflist").read_text())
    conflist["plugins"].append({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_setting": "1"}})
    Path(net.conf_dir, f"10-{net.name}.conflist").write_text(json.dumps(conflist))
    svc.start_container(box)
    with pytest.raises(errors.CtrError, match="'tuning' ADD on network"):
        svc.setup_network(net.request(box))
    assert os.path.isdir(os.path.join(net.ipam_dir, net.name)), "the bridge ADD did run before tuning failed"
    assert net.allocated() == [] and net.veths() == []
    assert svc.container_ip(box) == ""
    assert not [p for p in mount_points() if p.startswith(str(tmp_path))]
    assert "eth0" not in sh(svc, box, "ip -o link")[1]


def test_missing_plugin_fails_before_anything_runs(svc: DefaultService, net: Net, box: str) -> None:
    conflist = json.loads(Path(net.conf_dir, f"10-{net.name}.conflist").read_text())
    conflist["plugins"].append({"type": "no-such-plugin"})
    Path(net.conf_dir, f"10-{net.name}.conflist").write_text(json.dumps(conflist))
    svc.start_container(box)
    with pytest.raises(errors.NotFound, match=r"CNI plugin 'no-such-plugin' not found.*containernetworking-plugins"):
        svc.setup_network(net.request(box))
    assert net.allocated() == [] and net.veths() == []
    assert not os.path.exists(net.ipam_dir), "the bridge plugin never ran"


def test_empty_conf_dir(svc: DefaultService, box: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.d"
    empty.mkdir()
    svc.start_container(box)
    with pytest.raises(errors.NotFound, match=r"no CNI network config.*write_default_network_config"):
        svc.setup_network(NetworkSetupRequest(container_id=box, cni_conf_dir=str(empty)))
    assert not [p for p in mount_points() if p.startswith(str(tmp_path))]


def test_host_dns_and_timezone_reach_the_container(
    svc: DefaultService, test_images: dict[str, str], tmp_path: Path
) -> None:
    from ctr_magic.hosthelpers import fallback_resolv_conf, host_timezone_name

    cid = f"t-{secrets.token_hex(5)}"
    svc.create_container(CreateContainerRequest(id=cid, image_ref=test_images["busybox"], spec=ContainerSpec(
        cmd=["sleep", "600"], host_dns=True, host_timezone=True)))
    try:
        svc.start_container(cid)
        code, resolv = sh(svc, cid, "cat /etc/resolv.conf")
        assert code == 0
        if os.path.exists("/run/systemd/resolve/resolv.conf"):
            assert resolv == Path("/run/systemd/resolve/resolv.conf").read_text()
        else:
            assert resolv == fallback_resolv_conf(Path("/etc/resolv.conf").read_text())
        assert "127.0.0.53" not in resolv
        code, out = sh(svc, cid, "echo TZ=$TZ; md5sum /etc/localtime; touch /etc/resolv.conf 2>&1 || echo read-only")
        assert f"TZ={host_timezone_name()}\n" in out and out.endswith("read-only\n")
        host_md5 = subprocess.run(["md5sum", os.path.realpath("/etc/localtime")], capture_output=True, text=True,
                                  check=True).stdout.split()[0]
        assert host_md5 in out
    finally:
        svc.delete_container(cid, DeleteContainerOptions(force=True))
    assert not list((tmp_path / "data").glob(f"*/containers/{cid}")), "the fallback resolv.conf goes with it"
