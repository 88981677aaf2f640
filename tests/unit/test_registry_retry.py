"""Retry policy, and the client's behaviour on failures a real registry does not produce on demand.

The HTTP server here is a stand-in, used only to provoke what docker-registry will not do when
asked: answer 503 a few times, cut a blob off mid-body, ignore ``Range``, send wrong or extra bytes.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import random
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from ctr_magic import errors
from ctr_magic.constants import MEDIA_OCI_MANIFEST
from ctr_magic.reference import parse_reference
from ctr_magic.registry import Descriptor, DigestMismatch, RegistryClient, RegistryOptions, RetryPolicy
from ctr_magic.registry.retry import parse_retry_after

FAST = RetryPolicy(attempts=4, base=0.001, cap=0.01, jitter=False)
BLOB = bytes(random.Random(1).randbytes(300_000))
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": BLOB_DIGEST, "size": len(BLOB)}, "layers": []}).encode()


# --------------------------------------------------------------------------- policy


def test_delays_grow_and_are_capped() -> None:
    policy = RetryPolicy(attempts=6, base=0.5, cap=3.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = RetryPolicy(base=1.0, cap=8.0)
    rng = random.Random(3)
    for attempt in range(1, 6):
        ceiling = min(8.0, 2 ** (attempt - 1))
        assert ceiling / 2 <= jittered.delay(attempt, rng=rng) <= ceiling


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(cap=4.0)
    assert policy.delay(1, "2") == 2.0
    assert policy.delay(1, "120") == 4.0
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 0 < parse_retry_after(later) <= 30  # type: ignore[operator]
    assert parse_retry_after("not a date") is None
    assert parse_retry_after(None) is None


def test_what_is_retried() -> None:
    policy = RetryPolicy()
    assert all(policy.retryable_status(s) for s in (429, 500, 502, 503, 504))
    assert not any(policy.retryable_status(s) for s in (200, 400, 401, 403, 404))
    assert policy.retryable_error(httpx.ConnectError("refused"))
    assert policy.retryable_error(httpx.ReadTimeout("slow"))
    assert policy.retryable_error(httpx.RemoteProtocolError("cut"))
    assert not policy.retryable_error(httpx.UnsupportedProtocol("ftp"))
    assert not policy.retryable_error(ValueError("x"))


def test_sleep_wakes_when_cancelled() -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(errors.Interrupted):
        RetryPolicy().sleep(60, cancel)


# --------------------------------------------------------------------------- a stand-in server


class _State:
    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.ranges: list[str] = []


def _handler(state: _State) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  length: int | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path
            hit = state.hits[path] = state.hits.get(path, 0) + 1
            rng = self.headers.get("Range", "")
            if rng:
                state.ranges.append(rng)
            start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
            if path == "/v2/":
                self._send(200, b"{}")
            elif path == "/v2/flaky/manifests/latest":
                if hit <= 2:
                    self._send(503, b'{"errors":[{"code":"UNAVAILABLE","message":"busy"}]}', {"Retry-After": "0"})
                else:
                    self._send(200, MANIFEST, {"Content-Type": MEDIA_OCI_MANIFEST})
            elif path == "/v2/busy/manifests/latest":
                self._send(503, b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}')
            elif path.startswith("/v2/cut/blobs/") or path.startswith("/v2/norange/blobs/"):
                honour = path.startswith("/v2/cut/")
                if hit == 1:  # promise everything, send half, hang up
                    self._send(200, BLOB[: len(BLOB) // 2], length=len(BLOB))
                    self.close_connection = True
                    self.connection.shutdown(2)
                elif honour and start:
                    self._send(206, BLOB[start:], {"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"})
                else:
                    self._send(200, BLOB)
            elif path.startswith("/v2/bad/blobs/"):
                self._send(200, bytes([BLOB[0] ^ 1]) + BLOB[1:])
            elif path.startswith("/v2/long/blobs/"):
                self._send(200, BLOB + b"extra")
            else:
                self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')

    return Handler


@pytest.fixture
def stand_in() -> Iterator[tuple[str, _State]]:
    state = _State()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def _client(host: str) -> RegistryClient:
    return RegistryClient(host, RegistryOptions(), retry=FAST)


def test_503_is_retried_then_succeeds(stand_in: tuple[str, _State]) -> None:
    host, state = stand_in
    with _client(host) as client:
        raw, desc = client.get_manifest(parse_reference(f"{host}/flaky:latest"))
    assert raw == MANIFEST and desc.media_type == MEDIA_OCI_MANIFEST
    assert state.hits["/v2/flaky/manifests/latest"] == 3


def test_retries_are_bounded(stand_in: tuple[str, _State]) -> None:
    host, state = stand_in
    with _client(host) as client, pytest.raises(errors.Unavailable, match="HTTP 503") as err:
        client.get_manifest(parse_reference(f"{host}/busy:latest"))
    assert state.hits["/v2/busy/manifests/latest"] == FAST.attempts
    assert "try later" in str(err.value)


def test_blob_cut_off_is_resumed_with_range(stand_in: tuple[str, _State]) -> None:
    host, state = stand_in
    desc = Descriptor("application/octet-stream", BLOB_DIGEST, len(BLOB))
    with _client(host) as client:
        data = b"".join(client.iter_blob("cut", desc, chunk_size=1 << 16))
    assert data == BLOB
    assert state.ranges and state.ranges[0].startswith("bytes=") and state.ranges[0] != "bytes=0-"


def test_blob_resume_when_range_is_ignored(stand_in: tuple[str, _State]) -> None:
    host, _ = stand_in
    desc = Descriptor("application/octet-stream", BLOB_DIGEST, len(BLOB))
    with _client(host) as client:
        assert b"".join(client.iter_blob("norange", desc, chunk_size=1 << 16)) == BLOB


def test_wrong_bytes_fail_verification(stand_in: tuple[str, _State]) -> None:
    host, _ = stand_in
    desc = Descriptor("application/octet-stream", BLOB_DIGEST, len(BLOB))
    with _client(host) as client:
        with pytest.raises(DigestMismatch, match="hash to sha256:"):
            b"".join(client.iter_blob("bad", desc))
        with pytest.raises(DigestMismatch, match="more than"):
            b"".join(client.iter_blob("long", desc))
        with pytest.raises(errors.NotFound, match="no such blob"):
            b"".join(client.iter_blob("missing", desc))


def test_nobody_listening(tmp_path: Any) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with _client(f"127.0.0.1:{port}") as client, pytest.raises(errors.Unavailable, match="is it running"):
        client.get_manifest(parse_reference(f"127.0.0.1:{port}/x:1"))
