"""The CNI runner: config loading, the plugin protocol, errors, results on disk.

Most tests use stand-in plugins (small shell scripts in a temp dir) because they must see or
provoke what a real plugin never shows: the exact environment and stdin it was given, garbage on
stdout, a hang. The real plugins from /usr/lib/cni are exercised in test_cni_runner.py and in the
integration tests.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ctr_magic import errors
from ctr_magic.cni import (
    Attachment,
    AttachmentRecord,
    CNIRunner,
    NetworkConfig,
    PluginError,
    ResultStore,
    load_network_configs,
)
from ctr_magic.containerd.network import default_network_config, write_default_network_config
from ctr_magic.containerd.runtime_base import default_data_dir

# Records its environment and stdin, then answers like an interface plugin (or passes prevResult on).
RECORDER = r"""#!/bin/sh
dir="$(dirname "$0")/calls"
mkdir -p "$dir"
n=$(ls "$dir" | wc -l)
f="$dir/$(printf %03d "$n")-$(basename "$0")-$CNI_COMMAND"
cat > "$f.stdin"
env | grep '^CNI_' | sort > "$f.env"
if [ "$CNI_COMMAND" = ADD ]; then
  if grep -q prevResult "$f.stdin"; then
    sed -e 's/.*"prevResult": *//' -e 's/}$//' "$f.stdin"
  else
    printf '{"cniVersion":"1.0.0","interfaces":[{"name":"br0"},'
    printf '{"name":"%s","sandbox":"%s"}],' "$CNI_IFNAME" "$CNI_NETNS"
    printf '"ips":[{"interface":1,"address":"10.1.2.3/24","gateway":"10.1.2.1"},'
    printf '{"interface":0,"address":"10.1.2.1/24"}]}'
  fi
fi
"""
FAILER = """#!/bin/sh
cat >/dev/null
echo '{"cniVersion":"1.0.0","code":11,"msg":"try again later","details":"address pool busy"}'
exit 1
"""
BAD_CONFIG = """#!/bin/sh
cat >/dev/null
echo '{"code":7,"msg":"invalid network config"}'
exit 1
"""
GARBAGE = """#!/bin/sh
cat >/dev/null
echo 'this is not json'
"""
STDERR_ONLY = """#!/bin/sh
cat >/dev/null
echo 'panic: something broke' >&2
exit 2
"""
HANG = """#!/bin/sh
exec sleep 30
"""


def _plugin(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("rec-a", "rec-b"):
        _plugin(d, name, RECORDER)
    _plugin(d, "fail", FAILER)
    _plugin(d, "badconf", BAD_CONFIG)
    _plugin(d, "garbage", GARBAGE)
    _plugin(d, "stderr", STDERR_ONLY)
    _plugin(d, "hang", HANG)
    return d


def _calls(bin_dir: Path) -> list[tuple[str, dict[str, str], dict]]:
    out = []
    calls = bin_dir / "calls"
    for f in sorted(calls.glob("*.stdin")) if calls.exists() else []:
        env = dict(line.split("=", 1) for line in f.with_suffix(".env").read_text().splitlines())
        out.append((f.stem.split("-", 1)[1], env, json.loads(f.read_text())))
    return out


NET = NetworkConfig(name="net1", cni_version="1.0.0",
                    plugins=[{"type": "rec-a", "mtu": 1400}, {"type": "rec-b", "extra": {"x": 1}}])
ATT = Attachment(container_id="ns-box1", netns="/proc/1/ns/net", ifname="eth0")


# -- loading configs ----------------------------------------------------------------------------


def test_load_orders_files_and_wraps_single_confs(tmp_path: Path) -> None:
    (tmp_path / "20-b.conf").write_text(json.dumps({"cniVersion": "0.4.0", "name": "b", "type": "bridge"}))
    (tmp_path / "10-a.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "a", "plugins": [{"type": "bridge"}, {"type": "loopback"}]}))
    (tmp_path / "30-c.json").write_text(json.dumps({"name": "c", "type": "macvlan"}))
    (tmp_path / "README").write_text("not a config")
    nets = load_network_configs(str(tmp_path))
    assert [n.name for n in nets] == ["a", "b", "c"]
    assert [p["type"] for p in nets[0].plugins] == ["bridge", "loopback"]
    assert nets[1].plugins == [{"type": "bridge"}] and nets[1].cni_version == "0.4.0"
    assert nets[2].cni_version == "1.0.0"
    assert nets[0].source == str(tmp_path / "10-a.conflist")


def test_load_skips_duplicate_network_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "10-a.conf").write_text(json.dumps({"name": "same", "type": "bridge"}))
    (tmp_path / "20-a.conf").write_text(json.dumps({"name": "same", "type": "macvlan"}))
    nets = load_network_configs(str(tmp_path))
    assert [(n.name, n.plugins[0]["type"]) for n in nets] == [("same", "bridge")]
    assert "already defined" in caplog.text


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"type": "bridge"}), 'no "name"'),
        (json.dumps({"name": "x"}), 'neither "plugins" nor "type"'),
        (json.dumps({"name": "x", "plugins": []}), "non-empty list"),
        (json.dumps({"name": "x", "plugins": [{"mtu": 1}]}), 'plugin #0 of network .x. has no "type"'),
        (json.dumps({"name": "bad/name", "type": "bridge"}), "may hold only"),
        (json.dumps(["a"]), "expected a JSON object"),
    ],
)
def test_load_rejects_bad_configs_naming_the_file(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "10-x.conflist").write_text(content)
    with pytest.raises(errors.InvalidArgument, match=match) as info:
        load_network_configs(str(tmp_path))
    assert "10-x.conflist" in str(info.value)


def test_load_missing_dir_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="does not exist"):
        load_network_configs(str(tmp_path / "nope"))


def test_empty_dir_loads_nothing(tmp_path: Path) -> None:
    assert load_network_configs(str(tmp_path)) == []


# -- the default network --------------------------------------------------------------------------


def test_default_network_config_round_trips(tmp_path: Path) -> None:
    path = write_default_network_config(str(tmp_path / "net.d"), name="n1", bridge="cm-test0",
                                        subnet="10.213.5.0/24", ip_masq=False, ipam_data_dir=str(tmp_path / "ipam"))
    assert path == str(tmp_path / "net.d" / "10-n1.conflist")
    (net,) = load_network_configs(str(tmp_path / "net.d"))
    bridge, loopback = net.plugins
    assert (net.name, net.cni_version) == ("n1", "1.0.0")
    assert bridge["type"] == "bridge" and bridge["bridge"] == "cm-test0" and bridge["isGateway"] is True
    assert bridge["ipMasq"] is False
    assert bridge["ipam"] == {"type": "host-local", "ranges": [[{"subnet": "10.213.5.0/24"}]],
                              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(tmp_path / "ipam")}
    assert loopback == {"type": "loopback"}
    assert sorted(os.listdir(tmp_path / "net.d")) == ["10-n1.conflist"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subnet": "10.213.5.1/24"}, "not a network address"),
        ({"subnet": "banana"}, "not a network address"),
        ({"subnet": "10.213.5.0/31"}, "too small"),
        ({"bridge": "a-very-long-bridge-name"}, "not a valid interface name"),
        ({"bridge": "bad name"}, "not a valid interface name"),
        ({"name": "has space"}, "may hold only"),
    ],
)
def test_default_network_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=match):
        default_network_config(**kwargs)


def test_default_ipam_dir_is_under_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without one, host-local would keep the allocations in the host's /var/lib/cni/networks,
    # where nothing of ctr-magic ever removes them.
    monkeypatch.setenv("CTR_MAGIC_HOME", str(tmp_path / "home"))
    expected = os.path.join(default_data_dir(), "cni", "ipam")
    assert expected.startswith(str(tmp_path / "home"))
    assert default_network_config()["plugins"][0]["ipam"]["dataDir"] == expected
    path = write_default_network_config(str(tmp_path / "net.d"))
    (net,) = load_network_configs(str(tmp_path / "net.d"))
    assert net.source == path and net.plugins[0]["ipam"]["dataDir"] == expected


def test_write_default_needs_a_dir() -> None:
    with pytest.raises(errors.InvalidArgument, match="conf_dir"):
        write_default_network_config("")


# -- the protocol -----------------------------------------------------------------------------------


def test_add_runs_plugins_in_order_with_env_and_prev_result(bin_dir: Path) -> None:
    runner = CNIRunner([str(bin_dir / "missing"), str(bin_dir)])
    result = runner.add_network(NET, ATT)
    calls = _calls(bin_dir)
    assert [c[0] for c in calls] == ["rec-a-ADD", "rec-b-ADD"]
    first_env, first_in = calls[0][1], calls[0][2]
    assert first_env == {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "ns-box1", "CNI_IFNAME": "eth0",
                         "CNI_NETNS": "/proc/1/ns/net", "CNI_PATH": f"{bin_dir / 'missing'}:{bin_dir}"}
    assert first_in == {"type": "rec-a", "mtu": 1400, "name": "net1", "cniVersion": "1.0.0"}
    second = calls[1][2]
    assert second["name"] == "net1" and second["extra"] == {"x": 1}
    assert second["prevResult"]["ips"][0]["address"] == "10.1.2.3/24", "the first plugin's result is chained"
    assert result["ips"][0]["address"] == "10.1.2.3/24"


def test_del_runs_in_reverse_with_stored_result(bin_dir: Path) -> None:
    runner = CNIRunner([str(bin_dir)])
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.9.9.9/24"}]}
    runner.del_network(NET, Attachment("ns-box1", "", "eth3"), prev)
    calls = _calls(bin_dir)
    assert [c[0] for c in calls] == ["rec-b-DEL", "rec-a-DEL"]
    assert all(c[2]["prevResult"] == prev for c in calls)
    assert calls[0][1]["CNI_NETNS"] == "" and calls[0][1]["CNI_IFNAME"] == "eth3"


def test_failed_add_undoes_what_ran(bin_dir: Path) -> None:
    net = NetworkConfig("net2", "1.0.0", [{"type": "rec-a"}, {"type": "fail"}])
    with pytest.raises(PluginError, match="'fail' ADD on network 'net2' failed: try again later: address pool busy") \
            as info:
        CNIRunner([str(bin_dir)]).add_network(net, ATT)
    assert info.value.code == 11
    assert [c[0] for c in _calls(bin_dir)] == ["rec-a-ADD", "rec-a-DEL"]


def test_del_runs_every_plugin_then_raises_first_error(bin_dir: Path) -> None:
    net = NetworkConfig("net3", "1.0.0", [{"type": "rec-a"}, {"type": "fail"}, {"type": "rec-b"}])
    with pytest.raises(PluginError, match="'fail' DEL"):
        CNIRunner([str(bin_dir)]).del_network(net, ATT, {})
    assert [c[0] for c in _calls(bin_dir)] == ["rec-b-DEL", "rec-a-DEL"]


def test_config_error_codes_are_invalid_argument(bin_dir: Path) -> None:
    with pytest.raises(errors.InvalidArgument, match="invalid network config"):
        CNIRunner([str(bin_dir)]).add_network(NetworkConfig("n", "1.0.0", [{"type": "badconf"}]), ATT)


def test_garbage_result_is_an_error(bin_dir: Path) -> None:
    with pytest.raises(PluginError, match="not a JSON result"):
        CNIRunner([str(bin_dir)]).add_network(NetworkConfig("n", "1.0.0", [{"type": "garbage"}]), ATT)


def test_stderr_is_used_when_stdout_is_empty(bin_dir: Path) -> None:
    with pytest.raises(PluginError, match="panic: something broke"):
        CNIRunner([str(bin_dir)]).add_network(NetworkConfig("n", "1.0.0", [{"type": "stderr"}]), ATT)


def test_hanging_plugin_times_out(bin_dir: Path) -> None:
    runner = CNIRunner([str(bin_dir)], timeout=0.5)
    with pytest.raises(errors.Interrupted, match=r"did not finish within 0\.5s"):
        runner.add_network(NetworkConfig("n", "1.0.0", [{"type": "hang"}]), ATT)


def test_missing_plugin_names_the_package(bin_dir: Path) -> None:
    with pytest.raises(errors.NotFound, match="containernetworking-plugins"):
        CNIRunner([str(bin_dir)]).add_network(NetworkConfig("n", "1.0.0", [{"type": "nonesuch"}]), ATT)


@pytest.mark.parametrize("plugin_type", ["../bin/sh", "/bin/sh", ".."])
def test_plugin_type_must_be_a_plain_name(bin_dir: Path, plugin_type: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="plain name"):
        CNIRunner([str(bin_dir)]).find_plugin(plugin_type)


def test_runner_needs_a_bin_dir() -> None:
    with pytest.raises(errors.InvalidArgument, match="no CNI plugin directory"):
        CNIRunner(["", ""])


# -- results on disk -----------------------------------------------------------------------------


def _record(index: int, name: str, result: dict) -> AttachmentRecord:
    return AttachmentRecord(index, NetworkConfig(name, "1.0.0", [{"type": "bridge"}]),
                            Attachment("ns-box", "/pin", f"eth{index}"), result, netns_inode=42, pid=7,
                            extra={"bin_dirs": ["/usr/lib/cni"]})


def test_result_store_round_trip(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path / "ns" / "networks"))
    store.save("box", _record(1, "second", {"ips": []}))
    store.save("box", _record(0, "first", {"ips": [{"address": "10.0.0.5/24"}]}))
    loaded = ResultStore(str(tmp_path / "ns" / "networks")).load("box")
    assert [(r.index, r.network.name, r.attachment.ifname) for r in loaded] == [(0, "first", "eth0"),
                                                                                 (1, "second", "eth1")]
    assert loaded[0].result == {"ips": [{"address": "10.0.0.5/24"}]}
    assert (loaded[0].netns_inode, loaded[0].pid, loaded[0].extra) == (42, 7, {"bin_dirs": ["/usr/lib/cni"]})
    assert store.containers() == ["box"]
    for record in loaded:
        store.discard("box", record)
    store.remove_dir("box")
    assert store.load("box") == [] and store.containers() == []
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "ns" / "networks").iterdir())


def test_result_store_skips_unreadable_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = ResultStore(str(tmp_path))
    store.save("box", _record(0, "good", {}))
    (tmp_path / "box" / "01-bad.json").write_text("{broken")
    assert [r.network.name for r in store.load("box")] == ["good"]
    assert "unreadable network state" in caplog.text


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", ".."])
def test_result_store_rejects_path_tricks(tmp_path: Path, name: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        ResultStore(str(tmp_path)).load(name)


def test_addresses_only_inside_the_sandbox() -> None:
    record = _record(0, "n", {
        "interfaces": [{"name": "br0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/pin"}],
        "ips": [{"interface": 0, "address": "10.1.0.1/24"}, {"interface": 2, "address": "10.1.0.7/24"},
                {"interface": 2, "address": "fd00::7/64"}, {"address": "10.1.0.8/24"}],
    })
    assert record.addresses(4) == ["10.1.0.7", "10.1.0.8"]
    assert record.addresses(6) == ["fd00::7"]
