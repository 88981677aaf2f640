"""The private environment: up/status/down, the registry, and images that really run."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from images_support import ctr_cmd

from ctr_magic import cli, errors
from ctr_magic.env import Environment, EnvironmentInfo, find_binary
from ctr_magic.env import binaries as daemon_mod
from ctr_magic.platforms import host_platform
from ctr_magic.testimages import build_test_images, publish_test_images, registry_manifest_digest

# ----------------------------------------------------------------------------- helpers (independent of daemon.py)


def _live_processes() -> dict[int, list[str]]:
    """pid -> argv of every non-zombie process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")[:-1]
        except OSError:
            continue
        if stat.rpartition(")")[2].split()[0] in ("Z", "X") or not argv:
            continue
        out[int(name)] = [a.decode(errors="replace") for a in argv]
    return out


def _processes_mentioning(*needles: str) -> dict[int, list[str]]:
    return {
        pid: argv
        for pid, argv in _live_processes().items()
        if pid != os.getpid() and any(n in " ".join(argv) for n in needles)
    }


def _children_of(parents: set[int]) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) in parents:
                out.append(int(name))
    return out


def _mounts_under(*roots: str) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if any(point == r or point.startswith(r.rstrip("/") + "/") for r in roots):
                found.append(point)
    return found


def _http_status(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as resp:
        return resp.status


def _unix_get(sock_path: str, path: str) -> tuple[int, bytes]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sock_path)
    conn = http.client.HTTPConnection("localhost")
    conn.sock = s
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _assert_nothing_left(info: EnvironmentInfo, extra_pids: list[int] = ()) -> None:  # type: ignore[assignment]
    live = _live_processes()
    for name, pid in info.pids.items():
        assert pid not in live, f"{name} (pid {pid}) still running"
    for pid in extra_pids:
        assert pid not in live, f"pid {pid} still running"
    leftovers = _processes_mentioning(info.containerd_config, info.containerd_socket, info.base_dir, info.run_dir)
    assert not leftovers, f"processes left behind: {leftovers}"
    assert not _mounts_under(info.base_dir, info.run_dir), "mounts left behind"
    assert not Path(info.run_dir).exists(), f"{info.run_dir} left behind"
    assert not os.path.exists(info.containerd_socket)
    if info.dockerd_socket:
        assert not os.path.exists(info.dockerd_socket)


def _shim_socket(info: EnvironmentInfo, namespace: str, task_id: str) -> Path:
    key = f"{info.containerd_socket}/{namespace}/{task_id}".encode()
    return Path("/run/containerd/s") / hashlib.sha256(key).hexdigest()


def _ctr(info: EnvironmentInfo, namespace: str, *args: str, timeout: float = 120.0) -> str:
    return ctr_cmd(info, namespace, *args, timeout=timeout).stdout


# ----------------------------------------------------------------------------- the session environment


def test_up_gives_working_containerd_and_registry(environment: EnvironmentInfo) -> None:
    assert len(environment.containerd_socket.encode()) < 108
    res = subprocess.run(
        [find_binary("ctr"), "--address", environment.containerd_socket, "version"],
        capture_output=True,
        text=True,
        timeout=30, check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "Server:" in res.stdout
    assert environment.registry_addr.startswith("127.0.0.1:")
    assert _http_status(f"http://{environment.registry_addr}/v2/") == 200
    config = Path(environment.containerd_config).read_text()
    assert 'disabled_plugins = ["io.containerd.grpc.v1.cri"' in config
    assert f'address = "{environment.containerd_socket}"' in config


def _same_core(a: EnvironmentInfo, b: EnvironmentInfo) -> bool:
    """Same containerd and registry (another test may have added a dockerd to the shared environment)."""
    return (a.containerd_pid, a.registry_pid, a.containerd_socket, a.registry_addr, a.base_dir) == (
        b.containerd_pid, b.registry_pid, b.containerd_socket, b.registry_addr, b.base_dir)


def test_up_twice_returns_the_running_environment(environment: EnvironmentInfo) -> None:
    again = Environment(environment.base_dir).up()
    assert set(environment.pids) <= set(again.pids)
    assert _same_core(again, environment)


def test_status_from_a_fresh_object_reads_the_state_file(environment: EnvironmentInfo) -> None:
    env = Environment(environment.base_dir)
    status = env.status()
    assert status is not None and _same_core(status, environment)
    state = json.loads(env.state_file.read_text())
    assert state["info"]["containerd_pid"] == environment.containerd_pid
    assert Environment(Path(environment.base_dir) / "elsewhere").status() is None


def test_cli_status_prints_socket_and_hint(environment: EnvironmentInfo, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--home", environment.base_dir, "status"]) == 0
    out = capsys.readouterr().out
    assert environment.containerd_socket in out
    assert environment.registry_addr in out
    assert f"export CTR_MAGIC_SOCKET={environment.containerd_socket}" in out


def test_published_images_pull_and_run(
    test_images: dict[str, str], ctr: Callable[..., subprocess.CompletedProcess[str]], unique_id: str
) -> None:
    for ref in test_images.values():
        ctr("images", "pull", "--plain-http", ref)
    try:
        out = ctr("run", "--rm", test_images["busybox"], unique_id, "/bin/echo", "hello from busybox").stdout
        assert out.strip() == "hello from busybox"

        # image config: entrypoint + cmd, user app, working dir, env
        assert ctr("run", "--rm", test_images["config"], unique_id + "-c").stdout.strip() == "hello from config"
        script = "id -u; id -g; pwd; echo $FOO"
        out = ctr("run", "--rm", test_images["config"], unique_id + "-d", "/bin/sh", "-c", script).stdout
        assert out.split() == ["1000", "1000", "/work", "bar"]

        out = ctr("run", "--rm", test_images["layers"], unique_id + "-l", "cat", "/layer-1.txt", "/layer-4.txt").stdout
        assert out.splitlines() == ["layer 1", "layer 4"]

        out = ctr("run", "--rm", test_images["multi"], unique_id + "-m", "cat", "/platform.txt").stdout
        assert out.strip() == host_platform().architecture
    finally:
        ctr("images", "rm", *test_images.values(), check=False)
    assert ctr("containers", "ls", "-q").stdout.split() == []


def test_multi_platform_index_is_published_with_both_platforms(
    registry: str, test_images: dict[str, str], tmp_path: Path
) -> None:
    raw = subprocess.run(
        [find_binary("skopeo"), "inspect", "--tls-verify=false", "--raw", f"docker://{test_images['multi']}"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    index = json.loads(raw)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]}
    assert platforms == {("linux", "amd64"), ("linux", "arm64")}
    # digests are preserved: the registry serves exactly what the builder wrote
    built = build_test_images(tmp_path / "layout")
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == built["multi"].digest
    assert registry_manifest_digest(registry, "ctr-magic/multi", "latest") == built["multi"].digest


def _digests(registry: str, refs: dict[str, str]) -> dict[str, str | None]:
    out = {}
    for name, ref in refs.items():
        repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
        out[name] = registry_manifest_digest(registry, repo, tag)
    return out


def test_publish_test_images_is_idempotent_and_fast(registry: str, test_images: dict[str, str]) -> None:
    before = _digests(registry, test_images)
    t0 = time.monotonic()
    assert publish_test_images(registry) == test_images
    assert time.monotonic() - t0 < 10
    after = _digests(registry, test_images)
    assert after == before
    assert all(d and d.startswith("sha256:") for d in after.values())


def test_missing_binary_names_the_debian_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(daemon_mod.shutil, "which", lambda *a, **k: None)
    with pytest.raises(errors.Unavailable, match=r"apt-get install -y docker-registry"):
        find_binary("docker-registry")
    if os.geteuid() == 0:
        with pytest.raises(errors.Unavailable, match=r"containerd not found.*Debian package containerd"):
            Environment(tmp_path / "env").up()
        assert Environment(tmp_path / "env").status() is None


# ----------------------------------------------------------------------------- own environments


RUNC_ROOT = Path("/run/containerd/runc")


def _ns(prefix: str) -> str:
    """A namespace name no other test run on this host uses (runc's state dirs are shared by name)."""
    return f"{prefix}-{secrets.token_hex(4)}"


def test_down_leaves_no_process_mount_or_socket(make_environment: Callable[..., Environment], tmp_path: Path) -> None:
    env = make_environment()
    info = env.up()
    images = publish_test_images(info.registry_addr, work_dir=tmp_path / "images")
    ns, other = _ns("down"), _ns("other")
    _ctr(info, ns, "images", "pull", "--plain-http", images["busybox"])
    _ctr(info, ns, "run", "-d", images["busybox"], "sleeper", "sleep", "1000")
    # a second namespace, with an exec'd process too
    _ctr(info, other, "images", "pull", "--plain-http", images["layers"])
    _ctr(info, other, "run", "-d", images["layers"], "sleeper2", "sleep", "1000")
    _ctr(info, other, "tasks", "exec", "-d", "--exec-id", "ex1", "sleeper2", "sleep", "1001")
    tasks = _ctr(info, ns, "tasks", "ls")
    assert "RUNNING" in tasks
    shims = _processes_mentioning(f"-address {info.containerd_socket}")
    assert len(shims) == 2
    assert _mounts_under(info.run_dir), "expected the task rootfs to be mounted"
    assert _shim_socket(info, ns, "sleeper").exists()
    assert (RUNC_ROOT / ns).is_dir() and (RUNC_ROOT / other).is_dir()
    sleeper_pids = _children_of(set(shims))
    assert len(sleeper_pids) == 3  # two container inits and the exec'd process
    # runc dirs down() must leave: one holding something, one of a namespace this containerd never had
    kept = _ns("kept")
    _ctr(info, kept, "namespaces", "create", kept)
    (RUNC_ROOT / kept).mkdir()
    (RUNC_ROOT / kept / "something").write_text("not ours to judge\n")
    stranger = RUNC_ROOT / _ns("stranger")
    stranger.mkdir()

    try:
        t0 = time.monotonic()
        env.down()
        assert time.monotonic() - t0 < 20

        _assert_nothing_left(info, [*shims, *sleeper_pids])
        assert not _shim_socket(info, ns, "sleeper").exists()
        assert not _shim_socket(info, other, "sleeper2").exists()
        assert not (RUNC_ROOT / ns).exists() and not (RUNC_ROOT / other).exists()
        assert (RUNC_ROOT / kept / "something").exists() and stranger.is_dir()
    finally:
        shutil.rmtree(RUNC_ROOT / kept, ignore_errors=True)
        shutil.rmtree(stranger, ignore_errors=True)
    assert env.status() is None
    assert Environment(info.base_dir).status() is None
    env.down()  # harmless when already down

    # the data survives: up again and the image is still there (no task though)
    info2 = env.up()
    assert images["busybox"] in _ctr(info2, ns, "images", "ls", "-q").split()
    assert _ctr(info2, ns, "tasks", "ls", "-q").split() == []
    env.down()
    _assert_nothing_left(info2)


def test_down_after_containerd_crash_cleans_orphans(
    make_environment: Callable[..., Environment], tmp_path: Path
) -> None:
    env = make_environment()
    info = env.up()
    busybox = publish_test_images(info.registry_addr, work_dir=tmp_path / "images")["busybox"]
    ns = _ns("crash")
    _ctr(info, ns, "images", "pull", "--plain-http", busybox)
    _ctr(info, ns, "run", "-d", busybox, "orphan", "sleep", "1000")
    shims = list(_processes_mentioning(f"-address {info.containerd_socket}"))
    inits = _children_of(set(shims))
    assert len(shims) == 1 and len(inits) == 1

    os.kill(info.containerd_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while info.containerd_pid in _live_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert env.status() is None
    env.down()
    _assert_nothing_left(info, [*shims, *inits])
    assert not _shim_socket(info, ns, "orphan").exists()
    assert not (RUNC_ROOT / ns).exists(), "known from the shims when containerd cannot be asked"

    # containerd's data survived; the same container id can run again
    info2 = env.up()
    _ctr(info2, ns, "containers", "rm", "orphan")
    assert _ctr(info2, ns, "run", "--rm", busybox, "orphan", "echo", "again").strip() == "again"
    env.down()
    _assert_nothing_left(info2)


def test_failed_start_reports_the_log_and_cleans_up(
    make_environment: Callable[..., Environment], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_environment()
    monkeypatch.setattr(Environment, "_containerd_toml", lambda self: "version = 2\nroot = [broken\n")
    with pytest.raises(errors.Unavailable, match=r"containerd exited with status \d+; last log lines: .*toml"):
        env.up()
    assert env.status() is None
    assert not _processes_mentioning(str(env.containerd_config), str(env.registry_config))
    assert not Path(env.run_dir).exists()


def test_cli_up_and_down(make_environment: Callable[..., Environment], capsys: pytest.CaptureFixture[str]) -> None:
    home = str(make_environment().base_dir)
    assert cli.main(["--home", home, "status"]) == 3
    assert "not running" in capsys.readouterr().out
    assert cli.main(["--home", home, "up", "--json"]) == 0
    info = EnvironmentInfo.from_dict(json.loads(capsys.readouterr().out))
    assert info.base_dir == home
    assert cli.main(["--home", home, "down"]) == 0
    _assert_nothing_left(info)


def test_context_manager_stops_on_exit(tmp_path_factory: pytest.TempPathFactory) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with Environment(tmp_path_factory.mktemp("ctx")) as env:
        assert env.info is not None
        info = env.info
        assert _http_status(f"http://{info.registry_addr}/v2/") == 200
    _assert_nothing_left(info)


@pytest.mark.docker
@pytest.mark.slow
def test_with_docker_private_dockerd(make_environment: Callable[..., Environment], tmp_path: Path) -> None:
    try:
        find_binary("dockerd")
    except errors.Unavailable as exc:
        pytest.skip(str(exc))
    env = make_environment(with_docker=True)
    info = env.up()
    assert info.dockerd_socket and info.dockerd_pid
    assert _unix_get(info.dockerd_socket, "/_ping") == (200, b"OK")
    status, body = _unix_get(info.dockerd_socket, "/info")
    assert status == 200
    assert json.loads(body)["DockerRootDir"] == str(Path(info.base_dir) / "docker")
    assert Environment(info.base_dir).up().dockerd_pid == info.dockerd_pid

    images = publish_test_images(info.registry_addr, work_dir=tmp_path / "images")
    docker = None
    with contextlib.suppress(errors.Unavailable):
        docker = find_binary("docker")
    if docker:
        denv = {**os.environ, "DOCKER_HOST": info.docker_host or ""}
        run = subprocess.run(
            [docker, "run", "--rm", images["config"]], capture_output=True, text=True, env=denv, timeout=120,
            check=False
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "hello from config"
        subprocess.run(
            [docker, "run", "-d", "--name", "bg", images["busybox"], "sleep", "1000"],
            capture_output=True,
            check=True,
            env=denv,
            timeout=120,
        )
        names = subprocess.run(
            [docker, "ps", "--format", "{{.Names}}"], capture_output=True, text=True, env=denv, check=True
        ).stdout
        assert "bg" in names.split()
        # dockerd's containers live in the moby namespace of *our* containerd
        assert _ctr(info, "moby", "tasks", "ls", "-q").split()

    env.down()
    _assert_nothing_left(info)
    assert not _mounts_under(str(Path(info.base_dir) / "docker"))
