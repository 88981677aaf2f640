"""HTTP over a unix socket to an Engine API server, and the hijacked connection of exec/attach.

Ordinary calls go through httpx (``HTTPTransport(uds=...)``). httpx cannot hand over the socket
after an HTTP upgrade, so :func:`hijack` speaks just enough HTTP/1.1 on a raw socket: it sends
the request with ``Connection: Upgrade`` / ``Upgrade: tcp``, reads the status line and headers of
the 101 (or 200) answer and returns the socket, now a two-way byte stream.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any, Optional

import httpx

from .. import errors
from ..jsondoc import load_json
from .errors import error_for, message_of, unavailable, went_away

log = logging.getLogger(__name__)

_BASE_URL = "http://docker"  # the host part is ignored on a unix socket
_CONNECT_TIMEOUT = 5.0
_MAX_HEADER_BYTES = 64 * 1024
_WAKE_INTERVAL = 0.5
_UNSET: Any = object()
_SAFE_TO_RESEND = frozenset({"GET", "HEAD"})
_RESENDS = 4


def json_body(resp: httpx.Response, shape: type = object) -> Any:
    """The JSON document of an Engine API answer, which must be a *shape* (dict or list); else one-line CtrError."""
    where = f"the answer to {resp.request.method} {resp.request.url.path}"
    doc = load_json(resp.content, where, error=errors.CtrError,
                    hint="the socket may not be a Docker Engine API; check the address")
    if not isinstance(doc, shape):
        raise errors.CtrError(f"{where} is a JSON {type(doc).__name__}, not the {shape.__name__} the Engine API "
                              "sends", hint="the socket may not be a Docker Engine API; check the address")
    return doc


class Transport:
    """One httpx client bound to a unix socket; errors leave it as CtrError."""

    def __init__(self, socket_path: str, *, timeout: Optional[float] = 60.0, daemon: str = "the Docker daemon") -> None:
        if not socket_path:
            raise errors.InvalidArgument("Engine API socket path is empty", hint="e.g. /var/run/docker.sock")
        self.socket_path = socket_path
        self.daemon = daemon
        self.timeout = timeout
        #: ``(host, port)`` when the address is ``tcp://HOST:PORT`` (plain HTTP), else None: a unix socket
        self.tcp = tcp_address(socket_path)
        self._client = httpx.Client(
            transport=httpx.HTTPTransport() if self.tcp else httpx.HTTPTransport(uds=socket_path),
            base_url=f"http://{self.tcp[0]}:{self.tcp[1]}" if self.tcp else _BASE_URL,
            timeout=httpx.Timeout(timeout, connect=_CONNECT_TIMEOUT),
        )

    def _check_open(self) -> None:
        if self._client.is_closed:
            raise errors.Unavailable(f"the connection to {self.daemon} at {self.socket_path} was closed",
                                     hint="connect again")

    @contextlib.contextmanager
    def _mapped_errors(self, what: str) -> Iterator[None]:
        """httpx's timeout and transport errors as CtrError (Interrupted, Unavailable)."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise errors.Interrupted(f"{what}: no answer from {self.daemon} in time ({exc})") from None
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.CloseError) as exc:
            # The connection was up and broke: the daemon stopped or restarted during the call.
            raise went_away(what, self.socket_path, exc, daemon=self.daemon) from None
        except httpx.TransportError as exc:
            raise unavailable(self.socket_path, exc, daemon=self.daemon) from None

    def _timeout(self, timeout: Any) -> httpx.Timeout:
        value = self.timeout if timeout is _UNSET else timeout
        return httpx.Timeout(value, connect=_CONNECT_TIMEOUT)

    def request(  # noqa: PLR0913  (an HTTP request: method, path, query, body, headers, timeout...)
        self,
        method: str,
        path: str,
        *,
        what: str,
        kind: str = "",
        params: Optional[dict[str, str]] = None,
        body: Any = None,
        timeout: Any = _UNSET,
        ok: tuple[int, ...] = (),
        content: Any = None,
        headers: Optional[dict[str, str]] = None,
    ) -> httpx.Response:
        """Send one request (a JSON *body*, or raw *content*: bytes or an iterator of them, a tar unless
        *headers* say otherwise); a status >= 400 not listed in *ok* raises the mapped CtrError."""
        self._check_open()
        if content is not None and headers is None:
            headers = {"Content-Type": "application/x-tar"}
        with self._mapped_errors(what):
            for attempt in range(_RESENDS + 1):
                try:
                    resp = self._client.request(method, path, params=params, json=body, content=content,
                                                headers=headers,
                                                timeout=self._timeout(timeout))
                    break
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    # Most likely kept-alive connections the daemon closed when it stopped or restarted
                    # (the pool may hold several): again, until a new connection works or cannot be made.
                    if method not in _SAFE_TO_RESEND or attempt == _RESENDS:
                        raise
        if resp.status_code >= 400 and resp.status_code not in ok:
            raise error_for(resp.status_code, message_of(resp.content), what=what, kind=kind)
        return resp

    @contextlib.contextmanager
    def stream(  # noqa: PLR0913  (as request(), streamed)
        self,
        method: str,
        path: str,
        *,
        what: str,
        kind: str = "",
        params: Optional[dict[str, str]] = None,
        body: Any = None,
        timeout: Any = None,
        content: Any = None,
        headers: Optional[dict[str, str]] = None,
    ) -> Iterator[httpx.Response]:
        """A streamed response (pull progress, logs, events); no read timeout unless given.

        *content* (bytes or an iterator of them) is sent as the raw request body instead of JSON."""
        self._check_open()
        with self._mapped_errors(what), self._client.stream(
            method, path, params=params, json=body, content=content, headers=headers, timeout=self._timeout(timeout)
        ) as resp:
            if resp.status_code >= 400:
                raise error_for(resp.status_code, message_of(resp.read()), what=what, kind=kind)
            yield resp

    def hijack(self, path: str, body: Any, *, what: str, kind: str = "", method: str = "POST",
               upgrade: bool = True) -> HijackedConnection:
        """POST *path* asking for an upgrade; return the raw two-way stream that follows.

        ``method="GET", upgrade=False`` opens a long response (events) on a socket of its own, whose
        reader another thread can wake with :meth:`HijackedConnection.shutdown`.
        """
        self._check_open()
        payload = b"" if body is None else json.dumps(body).encode()
        content_type = "" if body is None else "Content-Type: application/json\r\n"
        upgrade_headers = "Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else ""
        head = (
            f"{method} {path} HTTP/1.1\r\n"
            "Host: docker\r\n"
            "User-Agent: ctr-magic\r\n"
            f"{content_type}"
            f"Content-Length: {len(payload)}\r\n"
            f"{upgrade_headers}"
            "\r\n"
        ).encode()
        sock = socket.socket(socket.AF_INET if self.tcp else socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(_CONNECT_TIMEOUT)
            try:
                sock.connect(self.tcp or self.socket_path)
            except OSError as exc:
                raise unavailable(self.socket_path, exc, daemon=self.daemon) from None
            sock.settimeout(self.timeout)
            sock.sendall(head + payload)
            status, headers, rest = _read_head(sock, what)
            if status not in (101, 200):
                raise error_for(status, message_of(_read_body(sock, headers, rest)), what=what, kind=kind)
            # Exec streams may stay silent as long as the process likes: no read timeout. The short
            # socket timeout only brings a blocked recv back to Python now and then, so a Ctrl-C that
            # the interpreter has noted (but that did not interrupt the call) is raised promptly.
            sock.settimeout(_WAKE_INTERVAL)
            chunked = "chunked" in headers.get("transfer-encoding", "").lower()
            return HijackedConnection(sock, rest, chunked=chunked, content_type=headers.get("content-type", ""))
        except TimeoutError:
            sock.close()
            raise errors.Interrupted(f"{what}: no answer from {self.daemon} in time") from None
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        self._client.close()


def tcp_address(address: str) -> Optional[tuple[str, int]]:
    """``tcp://HOST:PORT`` -> (host, port); None for a socket path; InvalidArgument for a bad TCP address."""
    if not address.startswith("tcp://"):
        return None
    host, sep, port = address[len("tcp://"):].rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise errors.InvalidArgument(f"engine address {address!r} is not tcp://HOST:PORT", hint="e.g. tcp://10.0.0.2:2375")
    return host.strip("[]"), int(port)


def _read_head(sock: socket.socket, what: str) -> tuple[int, dict[str, str], bytes]:
    """Status code, lower-cased headers and the bytes already read past the blank line."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise errors.Unavailable(f"{what}: the daemon closed the connection before answering")
        buf += chunk
        if len(buf) > _MAX_HEADER_BYTES:
            raise errors.CtrError(f"{what}: the daemon's answer has an oversized header")
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise errors.CtrError(f"{what}: malformed HTTP status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, rest


def _read_body(sock: socket.socket, headers: dict[str, str], rest: bytes) -> bytes:
    """The (small) body of an error answer on the raw socket."""
    length = headers.get("content-length")
    data = rest
    if length is not None and length.isdigit():
        while len(data) < int(length):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data[: int(length)]
    sock.settimeout(2.0)
    with contextlib.suppress(OSError):
        while len(data) < _MAX_HEADER_BYTES:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _dechunk_all(data)
    return data


def _dechunk_all(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, sep, data = data.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out


class HijackedConnection:
    """The raw stream after an upgrade: ``recv`` (with any bytes read early), ``send``, half-close."""

    def __init__(
        self, sock: socket.socket, early: bytes = b"", *, chunked: bool = False, content_type: str = ""
    ) -> None:
        self.sock = sock
        self._early = early
        self._chunk_left = 0 if chunked else -1  # -1: not chunked
        self._chunk_done = False
        self.content_type = content_type
        self._write_closed = False
        self._closed = False

    # -- reading ------------------------------------------------------------------------------------
    def _recv_raw(self, n: int) -> bytes:
        if self._early:
            data, self._early = self._early[:n], self._early[n:]
            return data
        while True:
            try:
                return self.sock.recv(n)
            except TimeoutError:
                continue  # see hijack(): only a chance to raise a pending KeyboardInterrupt

    def _read_exact_raw(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self._recv_raw(n - len(out))
            if not chunk:
                break
            out += chunk
        return out

    def _read_line_raw(self) -> bytes:
        line = b""
        while not line.endswith(b"\r\n"):
            ch = self._recv_raw(1)
            if not ch:
                break
            line += ch
        return line

    def recv(self, n: int = 65536) -> bytes:
        """Up to *n* bytes; ``b""`` at the end of the stream."""
        if self._chunk_left < 0:
            return self._recv_raw(n)
        if self._chunk_done:
            return b""
        if self._chunk_left == 0:
            size = int(self._read_line_raw().strip().split(b";")[0] or b"0", 16)
            if size == 0:
                self._chunk_done = True
                return b""
            self._chunk_left = size
        data = self._recv_raw(min(n, self._chunk_left))
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._read_exact_raw(2)  # the CRLF after each chunk
        return data

    def read_exact(self, n: int) -> bytes:
        """Exactly *n* bytes, fewer only at the end of the stream."""
        out = bytearray()
        while len(out) < n:
            chunk = self.recv(n - len(out))
            if not chunk:
                break
            out += chunk
        return bytes(out)

    # -- writing ------------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Send all of *data*, waiting as long as the peer applies back-pressure."""
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except TimeoutError:
                continue
            view = view[sent:]

    def close_write(self) -> None:
        """Half-close: the process sees end-of-file on its stdin, output keeps flowing."""
        if self._write_closed or self._closed:
            return
        self._write_closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def shutdown(self) -> None:
        """Wake up a reader blocked in ``recv`` (it sees end-of-stream) without closing the fd yet."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.shutdown()
        self.sock.close()

    @property
    def closed(self) -> bool:
        return self._closed


__all__ = ["HijackedConnection", "Transport", "tcp_address"]
