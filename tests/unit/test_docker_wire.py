"""The Engine API client's wire handling, without a daemon.

Most of it is pure parsing. A few tests serve canned HTTP answers on a throw-away unix socket:
they provoke answers that Debian's dockerd does not give (socktainer's ``v1.51`` version string,
a pull failure as a final ``{"error": ...}`` line under HTTP 200, a chunked hijack answer), so the
real-daemon tests in tests/integration cannot cover them.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctr_magic import errors
from ctr_magic.docker.api import EngineAPI, parse_api_version
from ctr_magic.docker.convert import parse_time, task_status
from ctr_magic.docker.errors import classify, message_of
from ctr_magic.docker.frames import ChunkReader, iter_frames
from ctr_magic.taskfilter import compile_task_filter as compile_filter
from ctr_magic.types import TaskInfo, TaskStatus

# ------------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize(("text", "want"), [("1.41", (1, 41)), ("v1.51", (1, 51)), (" V1.9 ", (1, 9))])
def test_api_versions(text: str, want: tuple[int, int]) -> None:
    assert parse_api_version(text) == want


@pytest.mark.parametrize("bad", ["", "one.two", "1", "1.x"])
def test_bad_api_versions(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        parse_api_version(bad)


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def reader(data: bytes, step: int) -> Iterator[bytes]:
    for i in range(0, len(data), step):
        yield data[i:i + step]


@pytest.mark.parametrize("step", [1, 3, 8, 1000])
def test_frames_are_demultiplexed_whatever_the_read_sizes(step: int) -> None:
    wire = frame(1, b"out1\n") + frame(2, b"err\n") + frame(1, b"") + frame(1, b"out2\n")
    got: dict[int, bytes] = {1: b"", 2: b""}
    for stream, data in iter_frames(ChunkReader(reader(wire, step)).recv, multiplexed=True):
        got[stream] += data
    assert got == {1: b"out1\nout2\n", 2: b"err\n"}


def test_a_large_frame_comes_in_pieces() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    pieces = list(iter_frames(ChunkReader(iter([frame(2, payload)])).recv, multiplexed=True))
    assert all(stream == 2 for stream, _ in pieces)
    assert len(pieces) > 1
    assert b"".join(data for _, data in pieces) == payload


def test_a_raw_stream_announced_as_multiplexed_passes_as_stdout() -> None:
    wire = b"plain text output, no frame headers\n"
    pieces = list(iter_frames(ChunkReader(iter([wire])).recv, multiplexed=True))
    assert b"".join(d for _, d in pieces) == wire
    assert {s for s, _ in pieces} == {1}


def test_terminal_streams_are_raw() -> None:
    wire = frame(1, b"x")  # looks like a header but a TTY stream is never multiplexed
    assert b"".join(d for _, d in iter_frames(ChunkReader(iter([wire])).recv, multiplexed=False)) == wire


@pytest.mark.parametrize(
    ("status", "message", "cls"),
    [
        (404, "No such container: x", errors.NotFound),
        (409, 'Conflict. The container name "/x" is already in use by container "abc"', errors.AlreadyExists),
        (409, "container abc is not running", errors.FailedPrecondition),
        (400, "invalid mount config", errors.InvalidArgument),
        (500, "manifest for r/x:1 not found: manifest unknown", errors.NotFound),
        (500, 'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused', errors.Unavailable),
        (500, "unauthorized: authentication required", errors.Unauthorized),
        (500, "something odd", errors.CtrError),
        (501, "not implemented", errors.NotSupported),
    ],
)
def test_errors_are_classified(status: int, message: str, cls: type[errors.CtrError]) -> None:
    assert classify(status, message) is cls


def test_messages_are_one_line() -> None:
    assert message_of(b'{"message": "first\\nsecond"}') == "first"
    assert message_of(b"page not found\n") == "page not found"
    assert message_of("") == ""


def test_times() -> None:
    t = parse_time("2026-11-28T12:00:28.241397514Z")
    assert t is not None and t.microsecond == 241397 and t.utcoffset() is not None
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time(0) is None
    assert parse_time(1_700_000_000) is not None


def test_task_status_words() -> None:
    assert task_status({"Status": "running", "Paused": False}) == TaskStatus.RUNNING
    assert task_status({"Status": "running", "Paused": True}) == TaskStatus.PAUSED
    assert task_status("exited") == TaskStatus.STOPPED
    assert task_status("dead") == TaskStatus.STOPPED
    assert task_status("created") == TaskStatus.CREATED
    assert task_status("weird") == TaskStatus.UNKNOWN


def test_task_filters() -> None:
    a = TaskInfo(container_id="web-1", id="web-1", pid=10, status=TaskStatus.RUNNING)
    b = TaskInfo(container_id="db", id="db", pid=0, status=TaskStatus.STOPPED, exit_code=1)
    cases = {
        "": [a, b],
        "container.id==db": [b],
        "status==running": [a],
        "status!=running": [b],
        "container.id~=^web": [a],
        'container.id=="db"': [b],
        "status==stopped,exit_code==1": [b],
        "status==stopped,exit_code==0": [],
        "id==web-1 or id==db": [a, b],
    }
    for text, want in cases.items():
        keep = compile_filter(text)
        assert [t for t in (a, b) if keep(t)] == want, text
    for bad in ("colour==red", "status", "id~=("):
        with pytest.raises(errors.InvalidArgument):
            compile_filter(bad)


# ------------------------------------------------------------------------------------------ canned server


class CannedServer:
    """Answers each connection on a unix socket with the next canned response (bytes)."""

    def __init__(self, path: Path, answers: list[bytes]) -> None:
        self.path = str(path)
        self.answers = answers
        self.requests: list[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for answer in self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(head.split(b"\r\n")[0])
                conn.sendall(answer)

    def close(self) -> None:
        self.sock.close()


def http(status: str, body: bytes, headers: str = "Content-Type: application/json\r\n") -> bytes:
    return f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "engine.sock"


def test_socktainer_style_version_and_pull_error_line(sock_path: Path) -> None:
    version = json.dumps({"Version": "1.2.0", "ApiVersion": "v1.51"}).encode()
    lines = b'{"status":"Pulling","progressDetail":{"current":5,"total":10}}\n{"error":"manifest unknown"}\n'
    server = CannedServer(sock_path, [
        http("200 OK", b"OK", "Content-Type: text/plain\r\n"),  # /_ping without an Api-Version header
        http("200 OK", version),  # /version
        http("200 OK", lines),  # /images/create
    ])
    api = EngineAPI(str(sock_path), daemon="socktainer")
    try:
        events: list[dict[str, object]] = []
        with pytest.raises(errors.NotFound, match="manifest unknown"):
            api.image_pull("registry.local/app", "1", on_event=events.append)
        assert api.api_version == "1.51"
        assert events == [{"status": "Pulling", "progressDetail": {"current": 5, "total": 10}}]
        assert server.requests[-1].startswith(b"POST /v1.51/images/create?")
    finally:
        api.close()
        server.close()


def test_hijack_reads_a_chunked_200_answer(sock_path: Path) -> None:
    body = frame(1, b"hello\n") + frame(2, b"oops\n")
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = CannedServer(sock_path, [answer + chunked])
    api = EngineAPI(str(sock_path), api_version="1.41")
    try:
        conn = api.exec_start("abc123", tty=False)
        got = list(iter_frames(conn.recv, multiplexed=True))
        conn.close()
        assert got == [(1, b"hello\n"), (2, b"oops\n")]
    finally:
        api.close()
        server.close()


def test_hijack_error_answers_are_mapped(sock_path: Path) -> None:
    server = CannedServer(sock_path, [http("404 Not Found", b'{"message":"No such exec instance: abc"}')])
    api = EngineAPI(str(sock_path), api_version="1.41")
    try:
        with pytest.raises(errors.NotFound, match="No such exec instance"):
            api.exec_start("abc", tty=False)
    finally:
        api.close()
        server.close()


def test_an_old_daemon_is_refused(sock_path: Path) -> None:
    server = CannedServer(sock_path, [http("200 OK", b"OK", "Api-Version: 1.12\r\n")])
    api = EngineAPI(str(sock_path))
    try:
        with pytest.raises(errors.NotSupported, match=r"1\.12"):
            api.containers()
    finally:
        api.close()
        server.close()


def test_an_endpoint_the_server_does_not_route_is_not_supported(sock_path: Path) -> None:
    # socktainer serves a subset of the Engine API; dockerd routes every endpoint ctr-magic uses,
    # so its "page not found" for /commit, /images/get ... can only be provoked here.
    missing = http("404 Not Found", b'{"message":"page not found"}')
    server = CannedServer(sock_path, [missing, missing, http("404 Not Found", b'{"message":"No such image: x"}')])
    api = EngineAPI(str(sock_path), api_version="1.51", daemon="socktainer")
    try:
        with pytest.raises(errors.NotSupported, match=r"socktainer .* does not serve it") as caught:
            api.commit("box", "registry.local/app", "1")
        assert caught.value.hint == "use the containerd or Docker backend"
        with pytest.raises(errors.NotSupported, match="tagging image"):
            api.image_tag("x", "registry.local/app", "1")
        with pytest.raises(errors.NotFound, match="No such image"):  # a real NotFound stays one
            api.image_tag("x", "registry.local/app", "1")
    finally:
        api.close()
        server.close()


def test_push_sends_the_credentials_header(sock_path: Path, tmp_path: Path) -> None:
    import base64

    from ctr_magic.docker.transfer import registry_auth_header
    from ctr_magic.registry.options import Credentials, RegistryOptions

    options = RegistryOptions(credentials={"registry.local": Credentials("ada", "s3cret")},
                              docker_config=str(tmp_path / "none.json"))
    header = registry_auth_header("registry.local", options)
    assert json.loads(base64.urlsafe_b64decode(header)) == {"username": "ada", "password": "s3cret",
                                                            "serveraddress": "registry.local"}
    assert registry_auth_header("elsewhere.local", options) == ""
    lines = b'{"status":"Pushing","id":"abc","progressDetail":{"current":1,"total":2}}\n{"error":"denied"}\n'
    server = CannedServer(sock_path, [http("200 OK", lines)])
    api = EngineAPI(str(sock_path), api_version="1.41")
    try:
        with pytest.raises(errors.CtrError, match="denied"):
            api.image_push("registry.local/app", "1", auth=header)
    finally:
        api.close()
        server.close()
