"""The OCI spec builder, without a daemon: defaults, image config, ContainerSpec, users, exec processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ctr_magic import errors
from ctr_magic.constants import DEFAULT_PATH_ENV
from ctr_magic.containerd.spec import (
    DEFAULT_CAPABILITIES,
    DirRootfs,
    ExecProcessOptions,
    NoRootfs,
    UserIds,
    build_spec,
    default_hostname,
    default_spec,
    exec_process,
    merge_env,
    oci_mount,
    parse_group,
    parse_passwd,
    resolv_conf_text,
    resolve_user,
    to_json_bytes,
)
from ctr_magic.types import ContainerSpec, MountSpec

PASSWD = b"""root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1::/:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
broken line
web:x:33:33::/var/www:/bin/false
"""
GROUP = b"""root:x:0:
daemon:x:1:
wheel:x:10:root,app
app:x:1000:
audio:x:29:app,web
staff:x:50:
"""


class FakeRootfs:
    """An in-memory image rootfs (a dict of files)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def read(self, path: str) -> bytes | None:
        return self.files.get(path)


@pytest.fixture
def rootfs() -> FakeRootfs:
    return FakeRootfs({"/etc/passwd": PASSWD, "/etc/group": GROUP})


# --------------------------------------------------------------------------- containerd's default spec


def test_default_spec_matches_containerd_defaults() -> None:
    spec = default_spec("ns1", "box")
    assert spec["ociVersion"] == "1.0.2-dev"
    assert spec["root"] == {"path": "rootfs"}
    process = spec["process"]
    assert process["cwd"] == "/"
    assert process["noNewPrivileges"] is True
    assert process["user"] == {"uid": 0, "gid": 0}
    for kind in ("bounding", "effective", "permitted"):
        assert process["capabilities"][kind] == list(DEFAULT_CAPABILITIES)
    assert "CAP_SYS_ADMIN" not in DEFAULT_CAPABILITIES
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    linux = spec["linux"]
    assert [ns["type"] for ns in linux["namespaces"]] == ["pid", "ipc", "uts", "mount", "network"]
    assert linux["cgroupsPath"] == "/ns1/box"
    assert "/proc/kcore" in linux["maskedPaths"] and "/sys/firmware" in linux["maskedPaths"]
    assert linux["readonlyPaths"] == ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    devices = linux["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}  # deny all first, then the usual devices
    allowed = {(d["major"], d.get("minor")) for d in devices[1:]}
    assert {(1, 3), (1, 5), (1, 8), (1, 9), (5, 0), (5, 2), (136, None)} <= allowed
    assert all(d["allow"] and d["type"] == "c" for d in devices[1:])


def test_default_mounts() -> None:
    mounts = {m["destination"]: m for m in default_spec("ns", "c")["mounts"]}
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/run"]
    assert mounts["/proc"]["type"] == "proc"
    assert mounts["/sys"]["options"][-1] == "ro"
    assert "newinstance" in mounts["/dev/pts"]["options"]
    assert mounts["/dev/shm"]["source"] == "shm" and "size=65536k" in mounts["/dev/shm"]["options"]


def test_default_spec_needs_namespace_and_id() -> None:
    with pytest.raises(errors.InvalidArgument):
        default_spec("", "c")
    with pytest.raises(errors.InvalidArgument):
        default_spec("ns", "")


def test_default_specs_are_independent() -> None:
    a = default_spec("ns", "a")
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    a["mounts"][0]["options"].append("ro")
    b = default_spec("ns", "b")
    assert "CAP_SYS_ADMIN" not in b["process"]["capabilities"]["bounding"]
    assert "ro" not in b["mounts"][0]["options"]


# --------------------------------------------------------------------------- environment


@pytest.mark.parametrize(
    ("base", "overrides", "expected"),
    [
        (["A=1", "B=2"], ["B=3"], ["A=1", "B=3"]),
        (["A=1"], ["C=x=y"], ["A=1", "C=x=y"]),
        (["A=1", "B=2"], ["A"], ["B=2"]),  # a bare name unsets
        (["A=1"], ["A", "A=4"], ["A=4"]),  # unset then set again
        ([], ["EMPTY="], ["EMPTY="]),
        (["PATH=/bin"], ["NOPE"], ["PATH=/bin"]),
    ],
)
def test_merge_env(base: list[str], overrides: list[str], expected: list[str]) -> None:
    assert merge_env(base, overrides) == expected


# --------------------------------------------------------------------------- users


def test_parse_passwd_and_group_skip_bad_lines() -> None:
    users = parse_passwd(PASSWD)
    assert [u.name for u in users] == ["root", "daemon", "app", "web"]
    assert users[2].uid == 1000 and users[2].home == "/home/app"
    groups = parse_group(GROUP)
    assert next(g for g in groups if g.name == "wheel").members == ("root", "app")
    assert parse_passwd(None) == [] and parse_group(b"x:y:notanumber:\n") == []


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", UserIds(0, 0, (0, 10))),  # root's supplementary groups are looked up too (containerd does)
        ("app", UserIds(1000, 1000, (1000, 10, 29))),
        ("1000", UserIds(1000, 1000, (1000, 10, 29))),
        ("4242", UserIds(4242, 0, (0,))),  # unknown uid: gid 0, no error
        ("app:staff", UserIds(1000, 50, (50, 10, 29))),
        ("1000:50", UserIds(1000, 50, (50, 10, 29))),
        ("web:0", UserIds(33, 0, (0, 29))),
        ("4242:4343", UserIds(4242, 4343, (4343,))),
    ],
)
def test_resolve_user(rootfs: FakeRootfs, user: str, expected: UserIds) -> None:
    assert resolve_user(user, rootfs) == expected


@pytest.mark.parametrize("user", ["nobody-here", "app:nogroup", "a:b:c", ":", "app:"])
def test_resolve_user_errors_name_the_problem(rootfs: FakeRootfs, user: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        resolve_user(user, rootfs)
    assert "\n" not in str(info.value)


def test_numeric_user_without_passwd() -> None:
    assert resolve_user("7:8", NoRootfs()) == UserIds(7, 8, (8,))
    assert resolve_user("7", NoRootfs()) == UserIds(7, 0, (0,))
    with pytest.raises(errors.InvalidArgument, match="'app' is not in the image's /etc/passwd"):
        resolve_user("app", NoRootfs())


def test_user_ids_to_oci() -> None:
    assert UserIds(1, 2, (2, 3)).to_oci() == {"uid": 1, "gid": 2, "additionalGids": [2, 3]}
    assert UserIds(0, 0).to_oci() == {"uid": 0, "gid": 0}


# --------------------------------------------------------------------------- files of a rootfs


def test_dir_rootfs_follows_symlinks_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "passwd").write_bytes(b"root:x:0:0::/:/bin/sh\n")
    (tmp_path / "etc").mkdir()
    # An absolute link must resolve inside the root, never on the host's /.
    os.symlink("/real/passwd", tmp_path / "etc" / "passwd")
    os.symlink("../../../../etc/shadow", tmp_path / "etc" / "escape")
    root = DirRootfs(str(tmp_path))
    assert root.read("/etc/passwd") == b"root:x:0:0::/:/bin/sh\n"
    assert root.resolve("/etc/escape") == str(tmp_path / "etc" / "shadow")
    assert root.read("/etc/escape") is None
    assert root.read("/etc/missing") is None
    assert root.read("/etc/passwd/inside-a-file") is None


def test_dir_rootfs_symlink_loop(tmp_path: Path) -> None:
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(OSError, match="symbolic links"):
        DirRootfs(str(tmp_path)).read("/a")


# --------------------------------------------------------------------------- the whole spec

IMAGE_CONFIG = {
    "Env": ["PATH=/usr/bin:/bin", "FOO=bar", "LANG=C"],
    "Entrypoint": ["/bin/sh", "-c"],
    "Cmd": ["echo hello"],
    "WorkingDir": "/work",
    "User": "app",
}


def test_image_config_applied(rootfs: FakeRootfs) -> None:
    spec = build_spec(namespace="ns", container_id="box", image_config=IMAGE_CONFIG, rootfs=rootfs)
    process = spec["process"]
    assert process["args"] == ["/bin/sh", "-c", "echo hello"]
    assert process["env"] == ["PATH=/usr/bin:/bin", "FOO=bar", "LANG=C"]
    assert process["cwd"] == "/work"
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 10, 29]}
    assert spec["hostname"] == "box"
    assert "terminal" not in process


def test_image_without_env_gets_default_path() -> None:
    spec = build_spec(namespace="ns", container_id="c", image_config={"Cmd": ["sh"]})
    assert spec["process"]["env"] == [DEFAULT_PATH_ENV]
    assert spec["process"]["cwd"] == "/"
    assert spec["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}


def test_container_spec_overrides(rootfs: FakeRootfs, tmp_path: Path) -> None:
    cs = ContainerSpec(
        cmd=["sleep", "1"],
        env=["FOO=baz", "LANG", "NEW=1"],
        work_dir="/tmp//x/",
        user="1000:50",
        tty=True,
        mounts=[MountSpec(destination="/data", source=str(tmp_path), options=["ro"]),
                MountSpec(destination="/dev/shm", type="tmpfs", options=["size=1g"])],
        hostname="my-host",
    )
    spec = build_spec(namespace="ns", container_id="box", image_config=IMAGE_CONFIG, container_spec=cs,
                      rootfs=rootfs, resolv_conf_path="/data/resolv.conf")
    process = spec["process"]
    assert process["args"] == ["sleep", "1"]  # cmd replaces Entrypoint + Cmd, as `ctr run IMAGE ID ARGS` does
    assert process["env"] == ["PATH=/usr/bin:/bin", "FOO=baz", "NEW=1", "TERM=xterm"]
    assert process["cwd"] == "/tmp/x"
    assert process["user"] == {"uid": 1000, "gid": 50, "additionalGids": [50, 10, 29]}
    assert process["terminal"] is True
    assert spec["hostname"] == "my-host"
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert mounts["/data"] == {"destination": "/data", "type": "bind", "source": str(tmp_path),
                               "options": ["rbind", "ro"]}
    assert mounts["/dev/shm"] == {"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs",
                                  "options": ["size=1g"]}
    assert [m["destination"] for m in spec["mounts"]].count("/dev/shm") == 1  # replaced, not doubled
    assert mounts["/etc/resolv.conf"]["source"] == "/data/resolv.conf"
    assert "ro" in mounts["/etc/resolv.conf"]["options"]


def test_tty_keeps_a_given_term(rootfs: FakeRootfs) -> None:
    cs = ContainerSpec(env=["TERM=vt100"], tty=True)
    spec = build_spec(namespace="ns", container_id="c", image_config=IMAGE_CONFIG, container_spec=cs, rootfs=rootfs)
    assert [e for e in spec["process"]["env"] if e.startswith("TERM=")] == ["TERM=vt100"]


def test_nothing_to_run_is_invalid() -> None:
    with pytest.raises(errors.InvalidArgument, match="no Entrypoint or Cmd"):
        build_spec(namespace="ns", container_id="c", image_config={}, image_name="scratch")


@pytest.mark.parametrize(
    "cs",
    [
        ContainerSpec(work_dir="relative"),
        ContainerSpec(env=["=nokey"]),
        ContainerSpec(env=[""]),
        ContainerSpec(mounts=[MountSpec(destination="data", source="/")]),
        ContainerSpec(mounts=[MountSpec(destination="/data")]),
        ContainerSpec(mounts=[MountSpec(destination="/data", source="/does/not/exist/anywhere")]),
        ContainerSpec(hostname="bad_host!"),
        ContainerSpec(user="ghost"),
        ContainerSpec(cmd=["ok", 3]),  # type: ignore[list-item]
    ],
)
def test_bad_container_specs(rootfs: FakeRootfs, cs: ContainerSpec) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        build_spec(namespace="ns", container_id="c", image_config=IMAGE_CONFIG, container_spec=cs, rootfs=rootfs)
    assert "\n" not in str(info.value)


def test_bind_mount_keeps_explicit_bind_option(tmp_path: Path) -> None:
    mount = oci_mount(MountSpec(destination="/x/", source=str(tmp_path), options=["bind", "rw"]))
    assert mount["options"] == ["bind", "rw"] and mount["destination"] == "/x"


def test_resolv_conf_text() -> None:
    assert resolv_conf_text(["10.0.0.2", " ::1 "]) == "nameserver 10.0.0.2\nnameserver ::1\n"
    with pytest.raises(errors.InvalidArgument, match="not an IP address"):
        resolv_conf_text(["dns.example"])


@pytest.mark.parametrize(
    ("cid", "hostname"),
    [("box", "box"), ("web-1", "web-1"), ("my_box", "my-box"), ("a" * 70, "a" * 63), ("_", "container")],
)
def test_default_hostname(cid: str, hostname: str) -> None:
    assert default_hostname(cid) == hostname


def test_spec_is_compact_json(rootfs: FakeRootfs) -> None:
    spec = build_spec(namespace="ns", container_id="c", image_config=IMAGE_CONFIG, rootfs=rootfs)
    raw = to_json_bytes(spec)
    assert b" " not in raw.replace(b"echo hello", b"")
    assert json.loads(raw) == spec


# --------------------------------------------------------------------------- exec processes


def test_exec_process_starts_from_the_container_process(rootfs: FakeRootfs) -> None:
    spec = build_spec(namespace="ns", container_id="c", image_config=IMAGE_CONFIG, rootfs=rootfs)
    base = spec["process"]
    process = exec_process(base, ExecProcessOptions(args=["ls", "-l"], env=["FOO=exec", "X=1"], work_dir="/tmp",
                                                    terminal=True, user=UserIds(0, 0, (0,))))
    assert process["args"] == ["ls", "-l"]
    assert process["env"] == ["PATH=/usr/bin:/bin", "FOO=exec", "LANG=C", "X=1", "TERM=xterm"]
    assert process["cwd"] == "/tmp"
    assert process["terminal"] is True
    assert process["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert process["capabilities"] == base["capabilities"] and process["rlimits"] == base["rlimits"]
    # The container's own process is untouched.
    assert base["args"] == ["/bin/sh", "-c", "echo hello"] and base["cwd"] == "/work"
    plain = exec_process(base, ExecProcessOptions(args=["true"]))
    assert plain["cwd"] == "/work" and plain["user"] == base["user"] and plain["terminal"] is False


def test_exec_process_rejects_relative_work_dir() -> None:
    with pytest.raises(errors.InvalidArgument):
        exec_process({"args": ["sh"], "env": []}, ExecProcessOptions(args=["true"], work_dir="tmp"))
