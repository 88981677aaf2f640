"""A small CNI runtime: load network configs, run plugin binaries, keep their results on disk.

The protocol (CNI spec 1.0): a plugin is an executable found by its ``type`` in the plugin
directories; it reads its network config as JSON on stdin and learns what to do from the
environment (``CNI_COMMAND`` ADD/DEL, ``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``,
``CNI_PATH``). The plugins of a network config list run in order for ADD, each given the previous
plugin's result as ``prevResult``, and in reverse order for DEL, given the stored ADD result.
A failing plugin exits non-zero and prints ``{"code", "msg", "details"}`` on stdout.

This module knows nothing of containerd: :mod:`ctr_magic.containerd.network` finds the task's
network namespace and decides where results live.
"""

from __future__ import annotations

import copy
import fcntl
import json
import logging
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Optional

from . import errors
from .atomicfile import write_text_atomic
from .jsondoc import MAX_DEPTH, load_json, nesting_depth

log = logging.getLogger(__name__)

CNI_VERSION = "1.0.0"
CONFIG_EXTENSIONS = (".conflist", ".conf", ".json")
DEFAULT_PLUGIN_TIMEOUT = 60.0
_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STATE_VERSION = 1
# Network names and container ids as libcni accepts them.
_VALID_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")

# CNI well-known error codes that mean "the configuration is wrong", not "something broke".
_CONFIG_ERROR_CODES = {1, 2, 4, 6, 7}


@dataclass
class NetworkConfig:
    """One network: a config list (``.conflist``) or a single plugin config (``.conf``)."""

    name: str
    cni_version: str
    plugins: list[dict[str, Any]]
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cniVersion": self.cni_version, "plugins": copy.deepcopy(self.plugins)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "") -> NetworkConfig:
        """Parse a conflist, or a single-plugin conf (one with a ``type``), naming *source* in errors."""
        where = source or "network config"
        if not isinstance(data, dict):
            raise errors.InvalidArgument(f"{where}: expected a JSON object")
        if nesting_depth(data) > MAX_DEPTH:
            raise errors.InvalidArgument(f"{where}: nests more than {MAX_DEPTH} levels deep, more than any real "
                                         "network config")
        name = data.get("name")
        if not name or not isinstance(name, str):
            raise errors.InvalidArgument(f"{where}: network config has no \"name\"")
        if not _VALID_NAME.match(name):
            raise errors.InvalidArgument(f"{where}: network name {name!r} may hold only letters, digits, '_', "
                                         "'.' and '-'")
        version = str(data.get("cniVersion") or CNI_VERSION)
        if "plugins" in data:
            plugins = data["plugins"]
            if not isinstance(plugins, list) or not plugins:
                raise errors.InvalidArgument(f"{where}: \"plugins\" must be a non-empty list")
        elif "type" in data:
            plugins = [{k: v for k, v in data.items() if k not in ("name", "cniVersion")}]
        else:
            raise errors.InvalidArgument(f"{where}: neither \"plugins\" nor \"type\" is set")
        for i, plugin in enumerate(plugins):
            if not isinstance(plugin, dict) or not plugin.get("type"):
                raise errors.InvalidArgument(f"{where}: plugin #{i} of network {name!r} has no \"type\"")
        return cls(name=name, cni_version=version, plugins=copy.deepcopy(plugins), source=source)


def load_network_configs(conf_dir: str) -> list[NetworkConfig]:
    """Every network config in *conf_dir*, in file-name order (as libcni orders them).

    Files ending in .conflist, .conf or .json are read; a later file naming a network that an
    earlier one defined is skipped with a warning.
    """
    try:
        names = sorted(n for n in os.listdir(conf_dir) if n.endswith(CONFIG_EXTENSIONS))
    except FileNotFoundError:
        raise errors.NotFound(f"CNI config directory {conf_dir} does not exist",
                              hint="create it, or write a default network with write_default_network_config()") \
            from None
    out: list[NetworkConfig] = []
    seen: set[str] = set()
    for name in names:
        path = os.path.join(conf_dir, name)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as fh:
            data = load_json(fh.read(), f"CNI config {path}", hint="fix or remove the file")
        net = NetworkConfig.from_dict(data, path)
        if net.name in seen:
            log.warning("CNI config %s: network %r already defined by an earlier file; skipped", path, net.name)
            continue
        seen.add(net.name)
        out.append(net)
    return out


class PluginError(errors.CtrError):
    """A CNI plugin reported an error (its code, message and details are kept)."""

    def __init__(self, message: str, *, code: int = 0, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.code = code


def _plugin_error(plugin: str, command: str, network: str, rc: int, stdout: bytes, stderr: bytes) -> errors.CtrError:
    code = 0
    text = ""
    try:
        doc = json.loads(stdout.decode("utf-8", "replace") or "null")
        if isinstance(doc, dict):
            code = int(doc.get("code") or 0)
            text = str(doc.get("msg") or "")
            if doc.get("details"):
                text = f"{text}: {doc['details']}" if text else str(doc["details"])
    except (ValueError, RecursionError):
        pass
    if not text:
        lines = (stderr or stdout).decode("utf-8", "replace").strip().splitlines()
        text = lines[-1] if lines else f"exit status {rc}"
    message = f"CNI plugin {plugin!r} {command} on network {network!r} failed: {text}"
    if code in _CONFIG_ERROR_CODES:
        return errors.InvalidArgument(message, hint="check the network's config file")
    return PluginError(message, code=code)


@dataclass
class Attachment:
    """Where a network is attached: container id as plugins see it, netns path, interface name."""

    container_id: str
    netns: str
    ifname: str


class CNIRunner:
    """Runs the plugins of network configs found in *bin_dirs* (searched in order)."""

    def __init__(self, bin_dirs: Sequence[str], *, timeout: float = DEFAULT_PLUGIN_TIMEOUT) -> None:
        dirs = [d for d in bin_dirs if d]
        if not dirs:
            raise errors.InvalidArgument("no CNI plugin directory given", hint="e.g. /usr/lib/cni")
        self.bin_dirs = dirs
        self.timeout = timeout

    def find_plugin(self, plugin_type: str) -> str:
        if "/" in plugin_type or plugin_type in (".", ".."):
            raise errors.InvalidArgument(f"CNI plugin type {plugin_type!r} is not a plain name")
        for directory in self.bin_dirs:
            path = os.path.join(directory, plugin_type)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        raise errors.NotFound(f"CNI plugin {plugin_type!r} not found in {':'.join(self.bin_dirs)}",
                              hint="install the Debian package containernetworking-plugins or fix cni_bin_dir")

    def check(self, networks: Sequence[NetworkConfig]) -> None:
        """NotFound naming the first plugin binary missing, before anything runs."""
        for network in networks:
            for plugin in network.plugins:
                self.find_plugin(plugin["type"])

    def _environment(self, command: str, att: Attachment) -> dict[str, str]:
        env = dict(os.environ)
        # Plugins call iptables, ip and friends: make sure sbin is on the PATH even for a notebook's env.
        env["PATH"] = ":".join(p for p in (env.get("PATH", ""), _SBIN_PATH) if p)
        env.update({
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": att.container_id,
            "CNI_NETNS": att.netns,
            "CNI_IFNAME": att.ifname,
            "CNI_PATH": ":".join(self.bin_dirs),
        })
        env.pop("CNI_ARGS", None)
        return env

    def exec_plugin(
        self,
        command: str,
        network: NetworkConfig,
        plugin: dict[str, Any],
        att: Attachment,
        prev_result: Optional[dict[str, Any]] = None,
    ) -> Optional[dict[str, Any]]:
        """Run one plugin; returns its parsed result (ADD) or None (DEL, CHECK)."""
        conf = copy.deepcopy(plugin)
        conf["name"] = network.name
        conf["cniVersion"] = network.cni_version
        if prev_result is not None:
            conf["prevResult"] = prev_result
        else:
            conf.pop("prevResult", None)
        path = self.find_plugin(plugin["type"])
        log.debug("CNI %s %s network=%s container=%s ifname=%s", command, plugin["type"], network.name,
                  att.container_id, att.ifname)
        try:
            proc = subprocess.run(
                [path], input=json.dumps(conf).encode(), capture_output=True,
                env=self._environment(command, att), timeout=self.timeout, check=False,
            )
        except subprocess.TimeoutExpired:
            raise errors.Interrupted(
                f"CNI plugin {plugin['type']!r} {command} on network {network.name!r} "
                f"did not finish within {self.timeout:g}s") from None
        if proc.returncode != 0:
            raise _plugin_error(plugin["type"], command, network.name, proc.returncode, proc.stdout, proc.stderr)
        if command != "ADD":
            return None
        try:
            result = load_json(proc.stdout or b"{}", "result", error=PluginError)
        except PluginError:
            raise PluginError(f"CNI plugin {plugin['type']!r} ADD on network {network.name!r} printed "
                              "something that is not a JSON result") from None
        return result if isinstance(result, dict) else {}

    def add_network(self, network: NetworkConfig, att: Attachment) -> dict[str, Any]:
        """ADD every plugin in order; on failure (or interrupt) DEL what ran and re-raise."""
        result: Optional[dict[str, Any]] = None
        ran: list[dict[str, Any]] = []
        try:
            for plugin in network.plugins:
                ran.append(plugin)
                result = self.exec_plugin("ADD", network, plugin, att, result) or result
        except BaseException:
            self._undo(network, att, ran, result)
            raise
        return result or {}

    def _undo(self, network: NetworkConfig, att: Attachment, ran: list[dict[str, Any]],
              result: Optional[dict[str, Any]]) -> None:
        for plugin in reversed(ran):
            try:
                self.exec_plugin("DEL", network, plugin, att, result)
            except Exception as exc:  # best effort: the original error is the one to report
                log.warning("undoing CNI %s after a failed ADD: %s", plugin.get("type"), exc)

    def del_network(self, network: NetworkConfig, att: Attachment, prev_result: Optional[dict[str, Any]]) -> None:
        """DEL every plugin in reverse order; all run even if one fails, then the first error is raised."""
        first: Optional[BaseException] = None
        for plugin in reversed(network.plugins):
            try:
                self.exec_plugin("DEL", network, plugin, att, prev_result)
            except errors.CtrError as exc:
                log.warning("%s", exc)
                first = first or exc
        if first is not None:
            raise first


# --------------------------------------------------------------------------- results on disk


@dataclass
class AttachmentRecord:
    """What ``setup`` did for one network of one container: enough for ``remove`` in another process."""

    index: int
    network: NetworkConfig
    attachment: Attachment
    result: dict[str, Any]
    netns_inode: int = 0
    pid: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "index": self.index,
            "network": self.network.to_dict(),
            "network_source": self.network.source,
            "container_id": self.attachment.container_id,
            "netns": self.attachment.netns,
            "ifname": self.attachment.ifname,
            "netns_inode": self.netns_inode,
            "pid": self.pid,
            "result": self.result,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttachmentRecord:
        return cls(
            index=int(data.get("index", 0)),
            network=NetworkConfig.from_dict(data["network"], data.get("network_source", "")),
            attachment=Attachment(data["container_id"], data.get("netns", ""), data["ifname"]),
            result=data.get("result") or {},
            netns_inode=int(data.get("netns_inode") or 0),
            pid=int(data.get("pid") or 0),
            extra=dict(data.get("extra") or {}),
        )

    def addresses(self, family: int = 4) -> list[str]:
        """Addresses (without prefix length) the result gave to interfaces inside the sandbox."""
        interfaces = self.result.get("interfaces") or []
        out = []
        for ip in self.result.get("ips") or []:
            address = str(ip.get("address", "")).split("/", 1)[0]
            if not address or (":" in address) != (family == 6):
                continue
            idx = ip.get("interface")
            if isinstance(idx, int) and 0 <= idx < len(interfaces) and not interfaces[idx].get("sandbox"):
                continue
            out.append(address)
        return out


class ResultStore:
    """One JSON file per network under ``root/<container>/`` (root is per containerd namespace)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def container_dir(self, container: str) -> str:
        if not container or "/" in container or container.startswith("."):
            raise errors.InvalidArgument(f"invalid name {container!r} for a network state directory")
        return os.path.join(self.root, container)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise setup/remove in this store, across threads and processes."""
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(os.path.join(self.root, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load(self, container: str) -> list[AttachmentRecord]:
        directory = self.container_dir(container)
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
        except FileNotFoundError:
            return []
        records = []
        for name in names:
            path = os.path.join(directory, name)
            try:
                with open(path, encoding="utf-8") as fh:
                    records.append(AttachmentRecord.from_dict(json.load(fh)))
            except (OSError, ValueError, KeyError, RecursionError, errors.CtrError) as exc:
                log.warning("ignoring unreadable network state %s (%s)", path, exc)
        return sorted(records, key=lambda r: r.index)

    def containers(self) -> list[str]:
        """Containers with recorded networks."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(self.root, n)))

    def _file(self, container: str, record: AttachmentRecord) -> str:
        return os.path.join(self.container_dir(container), f"{record.index:02d}-{record.network.name}.json")

    def save(self, container: str, record: AttachmentRecord) -> None:
        os.makedirs(self.container_dir(container), exist_ok=True)
        write_text_atomic(self._file(container, record), json.dumps(record.to_dict(), indent=1), mode=0o600)

    def discard(self, container: str, record: AttachmentRecord) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self._file(container, record))

    def remove_dir(self, container: str) -> None:
        """Remove the container's directory once nothing is left in it."""
        with suppress(OSError):
            os.rmdir(self.container_dir(container))


__all__ = [
    "CNI_VERSION",
    "Attachment",
    "AttachmentRecord",
    "CNIRunner",
    "NetworkConfig",
    "PluginError",
    "ResultStore",
    "load_network_configs",
]
