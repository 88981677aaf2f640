"""Snapshots, host mounts and CNI, side by side with what a ctr user would run.

- prepare + commit a snapshot: ctr-magic in-process vs ``ctr snapshots prepare`` + ``ctr snapshots commit``
- mount a snapshot on the host, read a file, unmount: ``mount_snapshot`` vs ``ctr snapshots mounts`` piped
  to sh, ``cat``, ``umount``
- attach + detach a running container to a bridge network: ``setup_network`` + ``remove_network`` vs the
  bare plugin calls (bridge + loopback ADD, then DEL) from a shell script: the floor.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from pathlib import Path

from ctr_magic.containerd.mounts import mount_snapshot
from ctr_magic.containerd.network import write_default_network_config
from ctr_magic.containerd.service import DefaultService
from ctr_magic.env import EnvironmentInfo, cni_bin_dir, find_binary
from ctr_magic.testimages import publish_test_images
from ctr_magic.types import ContainerSpec, CreateContainerRequest, DeleteContainerOptions, NetworkSetupRequest

from .runner import Comparison, interleave, timed
from .runner import run as run_ref

SN = "overlayfs"
REPEAT = 30


def _prepare_commit(svc: DefaultService, ctr: list[str], base: str, made: list[str]) -> Comparison:
    def ours() -> float:
        key, name = f"b-{secrets.token_hex(4)}", f"b-{secrets.token_hex(4)}"
        made.append(name)
        return timed(lambda: (svc.prepare_snapshot(SN, key, base), svc.commit_snapshot(SN, name, key)))

    def reference() -> float:
        key, name = f"b-{secrets.token_hex(4)}", f"b-{secrets.token_hex(4)}"
        made.append(name)
        return timed(lambda: (run_ref([*ctr, "snapshots", "prepare", key, base]),
                              run_ref([*ctr, "snapshots", "commit", name, key])))

    a, b = interleave(ours, reference, REPEAT)
    return Comparison("snapshot prepare + commit", a, b, "ctr snapshots", target=1.0)


def _mount_read(svc: DefaultService, ctr: list[str], key: str) -> Comparison:
    def ours() -> float:
        def go() -> None:
            directory, unmount = mount_snapshot(svc, SN, key)
            try:
                Path(directory, "etc", "passwd").read_bytes()
            finally:
                unmount()

        return timed(go)

    def reference() -> float:
        def go() -> None:
            with tempfile.TemporaryDirectory(prefix="bench-mnt-") as target:
                cmd = subprocess.run([*ctr, "snapshots", "mounts", target, key], check=True, capture_output=True,
                                     text=True).stdout
                run_ref(["sh", "-c", cmd])
                try:
                    run_ref(["cat", os.path.join(target, "etc", "passwd")])
                finally:
                    run_ref(["umount", target])

        return timed(go)

    a, b = interleave(ours, reference, REPEAT)
    return Comparison("mount snapshot, read a file, unmount", a, b, "ctr mounts + sh", target=0.5)


_PLUGIN_SCRIPT = """
set -e
export CNI_CONTAINERID=bench-ref CNI_NETNS="$1" CNI_IFNAME=eth1 CNI_PATH="$2"
conf="$3"
CNI_COMMAND=ADD "$2/bridge" < "$conf" > /dev/null
CNI_COMMAND=ADD "$2/loopback" < "$4" > /dev/null
CNI_COMMAND=DEL "$2/loopback" < "$4" > /dev/null
CNI_COMMAND=DEL "$2/bridge" < "$conf" > /dev/null
"""


def _network(svc: DefaultService, box: str, work: str) -> Comparison:
    import json

    tag = secrets.token_hex(3)
    conf_dir = os.path.join(work, "net.d")
    path = write_default_network_config(conf_dir, name=f"bench-{tag}", bridge=f"cmb{tag}", subnet="10.213.250.0/24",
                                        ip_masq=False, ipam_data_dir=os.path.join(work, "ipam"))
    conflist = json.loads(Path(path).read_text())
    bridge_conf = Path(work, "bridge.json")
    bridge_conf.write_text(json.dumps({"cniVersion": conflist["cniVersion"], "name": conflist["name"],
                                       **conflist["plugins"][0]}))
    loopback_conf = Path(work, "loopback.json")
    loopback_conf.write_text(json.dumps({"cniVersion": conflist["cniVersion"], "name": conflist["name"],
                                         "type": "loopback"}))
    req = NetworkSetupRequest(container_id=box, cni_conf_dir=conf_dir)
    netns = f"/proc/{svc.get_task_info(box).pid}/ns/net"
    try:
        a, b = interleave(
            lambda: timed(lambda: (svc.setup_network(req), svc.remove_network(req))),
            lambda: timed(lambda: run_ref(["sh", "-c", _PLUGIN_SCRIPT, "sh", netns, cni_bin_dir(), str(bridge_conf),
                                           str(loopback_conf)])),
            REPEAT,
        )
    finally:
        subprocess.run(["ip", "link", "del", f"cmb{tag}"], capture_output=True, check=False)
    return Comparison("CNI attach + detach (bridge, loopback)", a, b, "bare plugins", target=1.5)


def run(env: EnvironmentInfo) -> list[Comparison]:
    image = publish_test_images(env.registry_addr)["busybox"]
    namespace = f"bench-snapshots-{secrets.token_hex(3)}"
    ctr = [find_binary("ctr"), "--address", env.containerd_socket, "--namespace", namespace]
    made: list[str] = []
    box = f"bench-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="ctr-magic-bench-net-") as work, \
            DefaultService.connect(env.containerd_socket, namespace, data_dir=os.path.join(work, "data")) as svc:
        svc.pull_image(image)
        base = svc.images.resolve(image).top_chain_id
        active = f"bench-active-{secrets.token_hex(3)}"
        svc.prepare_snapshot(SN, active, base)
        svc.create_container(CreateContainerRequest(id=box, image_ref=image, spec=ContainerSpec(cmd=["sleep", "600"])))
        try:
            svc.start_container(box)
            results = [_prepare_commit(svc, ctr, base, made), _mount_read(svc, ctr, active), _network(svc, box, work)]
        finally:
            svc.delete_container(box, DeleteContainerOptions(force=True))
            for key in [*made, active]:
                svc.remove_snapshot(SN, key)
    return results
