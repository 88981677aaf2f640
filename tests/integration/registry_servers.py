"""Registries and helpers the image tests start on 127.0.0.1 for themselves.

- :class:`PrivateRegistry`: Debian's ``docker-registry`` with its own storage, optionally behind
  htpasswd basic auth or token auth; stoppable and restartable on the same port (for "registry died
  mid-pull" tests).
- :class:`TokenIssuer`: a token service for the registry's bearer flow; checks Basic credentials
  and signs ES256 JWTs (key and self-signed certificate made with ``cryptography``).
- :class:`TamperingProxy`: an HTTP proxy in front of a registry that corrupts the blobs it is told
  to, or slows every blob down (for timeouts).
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import bcrypt
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from tasks_support import wait_for

from ctr_magic.env import find_binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --------------------------------------------------------------------------- token issuer


class TokenIssuer:
    """``GET /token?service=..&scope=..`` with Basic auth -> ``{"token": <ES256 JWT>}``."""

    issuer = "ctr-magic-test-issuer"
    service = "ctr-magic-test-registry"

    def __init__(self, work_dir: Path, users: dict[str, str], refresh_tokens: Optional[dict[str, str]] = None) -> None:
        self.users = dict(users)
        self.refresh_tokens = dict(refresh_tokens or {})  # OAuth2 refresh token -> user (docker login with SSO)
        self.requests: list[dict[str, Any]] = []
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ctr-magic test token issuer")])
        now = dt.datetime.now(dt.timezone.utc)
        self._cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self._key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )  # fmt: skip
        self.cert_path = work_dir / "token-issuer.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-issuer", daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def __enter__(self) -> TokenIssuer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def sign(self, subject: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and name:
                access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                user = ""
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if issuer.users.get(user) != password:
                        user = ""
                issuer.requests.append({"user": user, "scope": query.get("scope", []), "path": url.path})
                if url.path != "/token" or not user:
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"details":"invalid credentials"}')
                    return
                self._grant(user, query.get("scope", []))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                user = ""
                if form.get("grant_type") == ["refresh_token"]:
                    user = issuer.refresh_tokens.get(form.get("refresh_token", [""])[0], "")
                issuer.requests.append({"user": user, "scope": form.get("scope", []), "path": self.path,
                                        "grant": "refresh_token"})
                if not user:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._grant(user, form.get("scope", []))

            def _grant(self, user: str, scopes: list[str]) -> None:
                token = issuer.sign(user, scopes)
                body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


# --------------------------------------------------------------------------- private registry


class PrivateRegistry:
    """A docker-registry of its own on 127.0.0.1 (plain HTTP), optionally with auth."""

    def __init__(self, work_dir: Path, *, htpasswd_users: Optional[dict[str, str]] = None,
                 token_issuer: Optional[TokenIssuer] = None) -> None:
        self.work_dir = work_dir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self._proc: Optional[subprocess.Popen[bytes]] = None
        auth = ""
        if htpasswd_users:
            lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=5)).decode()}"
                     for u, p in htpasswd_users.items()]
            (work_dir / "htpasswd").write_text("\n".join(lines) + "\n")
            auth = f"auth:\n  htpasswd:\n    realm: ctr-magic-test\n    path: {work_dir / 'htpasswd'}\n"
        elif token_issuer is not None:
            auth = (f"auth:\n  token:\n    realm: {token_issuer.realm}\n    service: {token_issuer.service}\n"
                    f"    issuer: {token_issuer.issuer}\n    rootcertbundle: {token_issuer.cert_path}\n")
        (work_dir / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {work_dir / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.addr}\n  secret: {secrets.token_hex(8)}\n{auth}"
        )

    def start(self) -> PrivateRegistry:
        log = open(self.work_dir / "registry.log", "ab")  # noqa: SIM115  (the child keeps it open)
        self._proc = subprocess.Popen([find_binary("docker-registry"), "serve", str(self.work_dir / "config.yml")],
                                      stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        wait_for(self._answers, timeout=15, what=f"registry on {self.addr} to answer")
        return self

    def _answers(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"registry exited: {(self.work_dir / 'registry.log').read_text()[-500:]}")
        try:
            with httpx.Client(trust_env=False, timeout=1) as client:
                return client.get(f"http://{self.addr}/v2/").status_code in (200, 401)
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """Stop it at once (SIGKILL), as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)
        self._proc = None

    def __enter__(self) -> PrivateRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def skopeo_copy(src: str, dest: str, *extra: str, creds: str = "") -> None:
    args = [find_binary("skopeo"), "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", *extra]
    if creds:
        args.append(f"--dest-creds={creds}")
    subprocess.run([*args, src, dest], check=True, capture_output=True, timeout=300)


def skopeo_inspect_raw(ref: str, creds: str = "") -> bytes:
    args = [find_binary("skopeo"), "inspect", "--raw", "--tls-verify=false"]
    if creds:
        args.append(f"--creds={creds}")
    return subprocess.run([*args, f"docker://{ref}"], check=True, capture_output=True, timeout=120).stdout


# --------------------------------------------------------------------------- tampering proxy


class TamperingProxy:
    """A plain-HTTP reverse proxy to *upstream* that flips a byte in blobs named in :attr:`corrupt`
    and sends blob bodies at most :attr:`rate` bytes/s when set."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.corrupt: set[str] = set()
        self.rate: Optional[float] = None
        self.stall_after: Optional[int] = None  # blob bytes sent before going silent (connection kept open)
        self.cut_after: Optional[int] = None  # blob bytes sent before closing the connection (once per blob)
        self.ranges: list[tuple[str, str]] = []  # (digest, Range header) of every blob GET
        self._cut: set[str] = set()
        self._stop = threading.Event()
        self._client = httpx.Client(trust_env=False, timeout=30, follow_redirects=False)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.addr = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="tampering-proxy", daemon=True)

    def __enter__(self) -> TamperingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._client.close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _relay(self, method: str) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "authorization", "range")}
                request = proxy._client.build_request(method, f"http://{proxy.upstream}{self.path}", headers=headers)
                response = proxy._client.send(request, stream=True)
                try:
                    is_blob = "/blobs/sha256:" in self.path
                    digest = self.path.rsplit("/", 1)[-1]
                    self.send_response(response.status_code)
                    for key, value in response.headers.items():
                        if key.lower() not in ("transfer-encoding", "connection"):
                            self.send_header(key, value)
                    self.end_headers()
                    if method == "HEAD":
                        return
                    if is_blob:
                        proxy.ranges.append((digest, self.headers.get("range", "")))
                    flipped = False
                    sent = 0
                    cut_at = proxy.cut_after if is_blob and digest not in proxy._cut else None
                    for chunk in response.iter_raw(64 * 1024):
                        if is_blob and digest in proxy.corrupt and not flipped and chunk:
                            chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                            flipped = True
                        if is_blob and proxy.rate:
                            time.sleep(len(chunk) / proxy.rate)
                        if cut_at is not None and sent + len(chunk) >= cut_at:
                            self.wfile.write(chunk[: cut_at - sent])
                            self.wfile.flush()
                            proxy._cut.add(digest)
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        if is_blob and proxy.stall_after is not None and sent + len(chunk) >= proxy.stall_after:
                            self.wfile.write(chunk[: proxy.stall_after - sent])
                            self.wfile.flush()
                            proxy._stop.wait()  # silent, connection open, until the proxy stops
                            return
                        self.wfile.write(chunk)
                        sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass
                finally:
                    response.close()

            def do_GET(self) -> None:
                self._relay("GET")

            def do_HEAD(self) -> None:
                self._relay("HEAD")

        return Handler


def write_docker_config(directory: Path, host: str, user: str, password: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path = directory / "config.json"
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


def copy_layout(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


__all__ = [
    "PrivateRegistry",
    "TamperingProxy",
    "TokenIssuer",
    "free_port",
    "os",
    "skopeo_copy",
    "skopeo_inspect_raw",
    "write_docker_config",
]
