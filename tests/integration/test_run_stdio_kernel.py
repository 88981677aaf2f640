"""`%ctr run` in a real kernel: the container's stdout and stderr arrive as IOPub streams of those names,
live (before the process ends), and stdin comes from the cell body or a variable."""

from __future__ import annotations

import os
import queue
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

DEADLINE = 120.0


@pytest.fixture
def kernel(environment: Any, namespace: str) -> Iterator[Any]:
    with tempfile.TemporaryDirectory(prefix="ctr-magic-kernel-") as sockets:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "kernel"))
        km.start_kernel(env={**os.environ, "CTR_MAGIC_HOME": environment.base_dir})
        client = km.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=DEADLINE)
            for line in ("%load_ext ctr_magic", f"%config CtrMagic.socket = {environment.containerd_socket!r}",
                         f"%config CtrMagic.namespace = {namespace!r}", "%config CtrMagic.progress = 'none'"):
                reply = client.execute_interactive(line, timeout=DEADLINE)
                assert reply["content"]["status"] == "ok", reply
            yield client
        finally:
            client.stop_channels()
            km.shutdown_kernel(now=True)


def _streams(client: Any, code: str, on_stream: Any = None) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Run *code*; the (stream name, text) IOPub messages in order, and the execute reply's content."""
    seen: list[tuple[str, str]] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            seen.append((msg["content"]["name"], msg["content"]["text"]))
            if on_stream is not None:
                on_stream(seen)

    reply = client.execute_interactive(code, timeout=DEADLINE, output_hook=hook)
    return seen, reply["content"]


def _text(seen: list[tuple[str, str]], name: str) -> str:
    return "".join(text for stream, text in seen if stream == name)


def test_stdout_and_stderr_arrive_apart_and_live(kernel: Any, test_images: dict[str, str], tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    opened: queue.Queue[bool] = queue.Queue()

    def open_gate(seen: list[tuple[str, str]]) -> None:
        # The container waits for this file; it is made only once "early" was seen on IOPub,
        # so the cell can only finish if its output streamed while it ran.
        if "early" in _text(seen, "stdout") and not (gate / "go").exists():
            (gate / "go").touch()
            opened.put(True)

    script = "echo early; echo to-err >&2; while [ ! -e /gate/go ]; do sleep 0.1; done; echo late"
    seen, reply = _streams(kernel, f"%ctr run --rm -v {gate}:/gate {test_images['busybox']} -- sh -c '{script}'",
                           open_gate)
    assert reply["status"] == "ok", reply
    assert opened.get_nowait()
    stdout = _text(seen, "stdout")
    assert stdout == "early\nlate\n" or stdout.endswith("\nearly\nlate\n")  # after a pull's line, if any
    early = next(i for i, (name, text) in enumerate(seen) if name == "stdout" and "early" in text.splitlines())
    late = next(i for i, (name, text) in enumerate(seen) if name == "stdout" and "late" in text.splitlines())
    assert early < late  # two messages: the first went out while the process still ran
    assert _text(seen, "stderr") == "to-err\n"


def test_cell_body_and_variable_feed_stdin(kernel: Any, test_images: dict[str, str]) -> None:
    seen, reply = _streams(kernel, f"%%ctr run --rm {test_images['busybox']} -- tr a-z A-Z\nhello from the cell\n")
    assert reply["status"] == "ok", reply
    assert _text(seen, "stdout") == "HELLO FROM THE CELL\n"
    _streams(kernel, "data = b'bytes from a variable\\n'")
    seen, reply = _streams(kernel, f"%ctr run --rm --stdin data {test_images['busybox']} -- tr a-z A-Z")
    assert _text(seen, "stdout") == "BYTES FROM A VARIABLE\n"


def test_terminal_and_exit_codes(kernel: Any, test_images: dict[str, str]) -> None:
    image = test_images["busybox"]
    seen, reply = _streams(kernel, f"%ctr run --rm -t {image} -- sh -c 'test -t 1 && echo on-a-tty'")
    assert reply["status"] == "ok", reply
    assert "on-a-tty" in _text(seen, "stdout")
    seen, reply = _streams(kernel, f"%ctr run --rm {image} -- sh -c 'exit 3'")
    assert reply["status"] == "ok"
    assert "exited with code 3" in _text(seen, "stderr")
    seen, reply = _streams(kernel, f"%ctr run --rm --check {image} -- sh -c 'exit 3'")
    assert reply["status"] == "error" and reply["ename"] == "CommandFailed"
