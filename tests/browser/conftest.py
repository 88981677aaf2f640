"""A real browser on real Jupyter front ends: Debian's chromium driven by Playwright, a private server and daemon.

The ``jupyter`` fixture runs once with JupyterLab 4 and once with Notebook 7 (the stock ipywidgets 8
front end in both). Each server listens on 127.0.0.1 (a free port, a random token) with its own config,
data, runtime and IPython directories and its own CTR_MAGIC_HOME, all under the test's temp dir;
its kernels talk to this session's private containerd. Teardown stops the server (which shuts
its kernels down) and makes sure no kernel of ours is left running.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ctr_magic import errors
from ctr_magic.env import Environment, EnvironmentInfo, find_binary
from ctr_magic.testimages import busybox_path, publish_test_images

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking"]
SERVER_START_DEADLINE = 120.0


def _require_host() -> None:
    if os.geteuid() != 0:
        pytest.skip("the browser test needs root (its notebook runs containers on a private containerd)")
    try:
        for name in ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "docker-registry", "skopeo"):
            find_binary(name)
        busybox_path()
    except errors.Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian chromium through Playwright (never a browser Playwright downloads)."""
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Chromium cannot start: {CHROMIUM} is missing (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        except Exception as exc:
            pytest.skip(f"Chromium cannot start: {str(exc).splitlines()[0]}")
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def browser_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvironmentInfo]:
    _require_host()
    env = Environment(tmp_path_factory.mktemp("browser-env"))
    try:
        yield env.up()
    finally:
        env.down()


@pytest.fixture(scope="session")
def browser_images(browser_env: EnvironmentInfo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return publish_test_images(browser_env.registry_addr, work_dir=tmp_path_factory.mktemp("browser-images"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class FrontEnd:
    """How to start one Jupyter front end and where it opens a notebook."""

    name: str
    module: str
    notebook_path: str  # URL path of a notebook, "{}" = its file name
    options: tuple[str, ...] = ()


FRONT_ENDS = {
    "jupyterlab4": FrontEnd("jupyterlab4", "jupyterlab", "lab/tree/{}",
                            ("--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate")),
    "notebook7": FrontEnd("notebook7", "notebook", "notebooks/{}"),
}


@dataclass
class Lab:
    front_end: FrontEnd
    url: str
    token: str
    root: Path
    runtime_dir: Path
    namespace: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def page_url(self, path: str) -> str:
        return f"{self.url}/{path}?token={self.token}"

    def notebook_url(self, name: str) -> str:
        return self.page_url(self.front_end.notebook_path.format(name))

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _kernel_pids(runtime_dir: Path) -> list[int]:
    """Processes whose command line names a connection file in our runtime dir (our kernels)."""
    marker = str(runtime_dir).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker in Path(f"/proc/{entry}/cmdline").read_bytes():
                pids.append(int(entry))
    return pids


def _wait_serving(lab: Lab) -> None:
    deadline = time.monotonic() + SERVER_START_DEADLINE
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise AssertionError(f"{lab.front_end.name} exited with {lab.process.returncode}:\n{lab.log_tail()}")
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(f"{lab.url}/api/status?token={lab.token}", timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{lab.front_end.name} did not serve within {SERVER_START_DEADLINE:.0f}s:\n{lab.log_tail()}")


@pytest.fixture(scope="session", params=sorted(FRONT_ENDS))
def jupyter(request: pytest.FixtureRequest, browser_env: EnvironmentInfo,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A JupyterLab 4 or Notebook 7 server of our own; stopped (with its kernels) at teardown."""
    front_end = FRONT_ENDS[request.param]
    base = tmp_path_factory.mktemp(front_end.name)
    dirs = {name: base / name for name in ("root", "config", "data", "runtime", "ipython", "home")}
    for path in dirs.values():
        path.mkdir()
    # No "get notified about news?" toast over the page (and no request for news).
    settings = dirs["config"] / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    token = secrets.token_hex(16)
    port = free_port()
    namespace = f"ctr-magic-browser-{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "HOME": str(dirs["home"]),
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "CTR_MAGIC_HOME": str(base / "ctr-magic-home"),
        "CTR_MAGIC_SOCKET": browser_env.containerd_socket,
        "CTR_MAGIC_NAMESPACE": namespace,
        "CTR_MAGIC_BACKEND": "containerd",
    }
    log_path = base / f"{front_end.name}.log"
    cmd = [sys.executable, "-m", front_end.module, "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={dirs['root']}",
           "--ServerApp.port_retries=0", *front_end.options]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    lab = Lab(front_end, f"http://127.0.0.1:{port}", token, dirs["root"], dirs["runtime"], namespace, process, log_path)
    try:
        _wait_serving(lab)
        yield lab
    finally:
        _stop(lab)
        _remove_namespace(browser_env, namespace)


def _stop(lab: Lab) -> None:
    if lab.process.poll() is None:
        lab.process.send_signal(signal.SIGTERM)  # the server shuts its kernels down on the way out
        try:
            lab.process.wait(30)
        except subprocess.TimeoutExpired:
            lab.process.kill()
            lab.process.wait(10)
    deadline = time.monotonic() + 15
    while _kernel_pids(lab.runtime_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in _kernel_pids(lab.runtime_dir):  # a kernel the server failed to stop: ours, by pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not _kernel_pids(lab.runtime_dir), f"a kernel of the test's {lab.front_end.name} is still running"


def _remove_namespace(env: EnvironmentInfo, namespace: str) -> None:
    from ctr_magic.containerd.service import DefaultService
    from ctr_magic.types import DeleteContainerOptions

    with DefaultService.connect(env.containerd_socket, namespace) as service:
        for info in service.list_containers():
            with contextlib.suppress(errors.CtrError):
                service.delete_container(info.id, DeleteContainerOptions(cleanup_snapshot=True, force=True))
        for image in service.list_images():
            with contextlib.suppress(errors.CtrError):
                service.delete_image(image.name)
        with contextlib.suppress(errors.CtrError):
            service.delete_namespace()


@pytest.fixture
def screenshots(tmp_path: Path) -> Iterator[Path]:
    """Where the test's screenshots go; with CTR_MAGIC_SCREENSHOTS=DIR one of each view is also copied there."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    yield folder
    target = os.environ.get("CTR_MAGIC_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in folder.glob("*.png"):
            shutil.copy2(shot, Path(target) / shot.name)
