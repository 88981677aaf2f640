"""Registry authentication: ``WWW-Authenticate`` challenges, Basic credentials and the bearer-token flow.

:class:`RegistryAuth` is an ``httpx.Auth``: it answers 401 challenges, caches tokens per scope and
sends what it learnt proactively on later requests. Secrets never reach a message, a repr or a log.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import urlsplit

import httpx

from .. import errors
from .options import Credentials, RegistryOptions

log = logging.getLogger(__name__)

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BARE_VALUE_RE = re.compile(r"[^,\s\"]+")
_REPO_PATH = re.compile(r"^/v2/(?P<name>.+)/(?:manifests|blobs|tags)/")
_DEFAULT_TOKEN_TTL = 60.0
_TOKEN_MARGIN = 5.0  # renew a little before a token expires
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: "basic" or "bearer"
    params: dict[str, str] = field(default_factory=dict)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    """*pos* is just after the opening quote; returns (value, position after the closing quote)."""
    out = []
    while pos < len(text):
        ch = text[pos]
        if ch == "\\" and pos + 1 < len(text):
            out.append(text[pos + 1])
            pos += 2
            continue
        if ch == '"':
            return "".join(out), pos + 1
        out.append(ch)
        pos += 1
    return "".join(out), pos  # unterminated: take what is there


def parse_www_authenticate(values: list[str] | str) -> list[Challenge]:
    """Parse one or more ``WWW-Authenticate`` header values (RFC 7235) into challenges.

    ``Bearer realm="https://a/token",service="reg",scope="repository:x:pull"`` ->
    ``[Challenge("bearer", {"realm": ..., "service": ..., "scope": ...})]``. Malformed parts are skipped.
    """
    if isinstance(values, str):
        values = [values]
    challenges: list[Challenge] = []
    for text in values:
        pos = 0
        current: Optional[Challenge] = None
        while pos < len(text):
            pos = _skip_ws(text, pos)
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            match = _TOKEN_RE.match(text, pos)
            if not match:
                if text[pos] == "=":  # a value without a name: skip it too
                    value_match = _BARE_VALUE_RE.match(text, _skip_ws(text, pos + 1))
                    pos = value_match.end() if value_match else pos + 1
                else:
                    pos += 1
                continue
            word, end = match.group(0), match.end()
            after = _skip_ws(text, end)
            if after < len(text) and text[after] == "=":
                value_pos = _skip_ws(text, after + 1)
                if value_pos < len(text) and text[value_pos] == '"':
                    value, pos = _read_quoted(text, value_pos + 1)
                else:  # unquoted: RFC says token, but realms like http://h:p/x are seen in the wild
                    value_match = _BARE_VALUE_RE.match(text, value_pos)
                    value = value_match.group(0) if value_match else ""
                    pos = value_match.end() if value_match else value_pos
                if current is not None:  # a parameter with no scheme before it is dropped
                    current.params[word.lower()] = value
                continue
            current = Challenge(word.lower(), {})
            challenges.append(current)
            pos = end
    return challenges


def scope_for_request(method: str, url: httpx.URL | str) -> str:
    """The token scope a registry API request needs: ``repository:<name>:pull`` (``pull,push`` to write)."""
    path = urlsplit(str(url)).path
    match = _REPO_PATH.match(path)
    if not match:
        return ""
    actions = "pull,push" if method.upper() in _WRITE_METHODS else "pull"
    return f"repository:{match.group('name')}:{actions}"


def _basic_header(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@dataclass
class _Token:
    value: str = field(repr=False)
    expires_at: float

    def fresh(self) -> bool:
        return time.monotonic() < self.expires_at - _TOKEN_MARGIN


class RegistryAuth(httpx.Auth):
    """Answers a registry's 401 challenges (Basic or Bearer) for one registry host."""

    def __init__(
        self,
        host: str,
        options: RegistryOptions,
        credentials: Callable[[], Optional[Credentials]],
        token_client: Callable[[], httpx.Client],
    ) -> None:
        self.host = host
        self._options = options
        self._credentials_provider = credentials
        self._credentials_loaded = False
        self._credentials: Optional[Credentials] = None
        self._token_client = token_client
        self._lock = threading.Lock()
        self._scheme = ""  # learnt from the first challenge
        self._bearer: dict[str, str] = {}  # realm and service of the bearer challenge
        self._tokens: dict[str, _Token] = {}

    def __repr__(self) -> str:
        return f"RegistryAuth(host={self.host!r}, scheme={self._scheme or 'unknown'!r})"

    # -- credentials --------------------------------------------------------------------------
    def credentials(self) -> Optional[Credentials]:
        with self._lock:
            if not self._credentials_loaded:
                self._credentials = self._credentials_provider()
                self._credentials_loaded = True
            return self._credentials

    def _who(self) -> str:
        creds = self.credentials()
        if creds is None:
            return "anonymous"
        user = f"user {creds.username!r}" if creds.username else "an identity token"
        return f"{user} (from {creds.source})" if creds.source else user

    def _need_credentials(self, scope: str) -> errors.Unauthorized:
        repo = _scope_repo(scope)
        what = f" to access repository {repo!r}" if repo else ""
        return errors.Unauthorized(
            f"registry {self.host} requires credentials{what}",
            hint=f"add them to ~/.docker/config.json (`docker login {self.host}` does) "
            "or pass RegistryOptions(credentials=...)",
        )

    def _rejected(self, scope: str) -> errors.Unauthorized:
        repo = _scope_repo(scope)
        what = f" for repository {repo!r}" if repo else ""
        return errors.Unauthorized(
            f"registry {self.host} rejected the credentials of {self._who()}{what}",
            hint="check the user name and password, and that the account may access this repository",
        )

    def learn(self, challenges: list[Challenge]) -> None:
        """Remember a challenge seen without a request to answer (the ``/v2/`` check)."""
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None)
        if bearer is not None:
            self._scheme = "bearer"
            self._bearer = {"realm": bearer.params["realm"], "service": bearer.params.get("service", "")}
        elif any(c.scheme == "basic" for c in challenges):
            self._scheme = "basic"

    # -- the httpx flow -----------------------------------------------------------------------
    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scope = scope_for_request(request.method, request.url)
        sent = self._proactive_header(scope)
        if sent:
            request.headers["Authorization"] = sent
        response = yield request
        if response.status_code != 401:
            return
        challenges = parse_www_authenticate(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            header = self._bearer_header(bearer, scope, refresh=bool(sent))
        elif basic is not None:
            creds = self.credentials()
            if not creds or not creds.password:
                raise self._need_credentials(scope)
            if sent:
                raise self._rejected(scope)
            self._scheme = "basic"
            header = _basic_header(creds)
        else:
            raise errors.Unauthorized(
                f"registry {self.host} asked for an unsupported authentication scheme "
                f"({', '.join(c.scheme for c in challenges) or 'none given'})"
            )
        request.headers["Authorization"] = header
        response = yield request
        if response.status_code == 401:
            if self.credentials():
                raise self._rejected(scope)
            raise self._need_credentials(scope)

    def _proactive_header(self, scope: str) -> str:
        if self._scheme == "basic":
            creds = self.credentials()
            return _basic_header(creds) if creds and creds.password else ""
        if self._scheme == "bearer":
            with self._lock:
                token = self._tokens.get(scope)
                if token is not None and token.fresh():
                    return "Bearer " + token.value
            if self._bearer and scope:
                return "Bearer " + self._token(scope)
        return ""

    def _bearer_header(self, challenge: Challenge, scope: str, *, refresh: bool) -> str:
        realm = challenge.params.get("realm", "")
        if not realm:
            raise errors.Unauthorized(f"registry {self.host} sent a bearer challenge without a realm")
        self._scheme = "bearer"
        self._bearer = {"realm": realm, "service": challenge.params.get("service", "")}
        wanted = challenge.params.get("scope") or scope
        if refresh:
            with self._lock:
                self._tokens.pop(wanted, None)
        return "Bearer " + self._token(wanted, cache_as=scope)

    def _token(self, scope: str, cache_as: str = "") -> str:
        with self._lock:
            cached = self._tokens.get(scope)
            if cached is not None and cached.fresh():
                return cached.value
        token = self._fetch_token(scope)
        with self._lock:
            self._tokens[scope] = token
            if cache_as and cache_as != scope:
                self._tokens[cache_as] = token
        return token.value

    def _fetch_token(self, scope: str) -> _Token:
        realm, service = self._bearer["realm"], self._bearer.get("service", "")
        realm_host = urlsplit(realm).netloc
        if urlsplit(realm).scheme != "https" and not self._options.allows_plain_http(realm_host):
            raise errors.Unauthorized(
                f"registry {self.host} sends clients to a token service over plain HTTP ({realm_host})",
                hint=f"add {realm_host} to insecure_registries only if you trust that network",
            )
        creds = self.credentials()
        client = self._token_client()
        try:
            if creds is not None and creds.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "client_id": "ctr-magic", "service": service}
                if scope:
                    form["scope"] = scope
                response = client.post(realm, data=form)
            else:
                params = [("service", service)] if service else []
                if scope:
                    params.append(("scope", scope))
                headers = {"Authorization": _basic_header(creds)} if creds and creds.password else {}
                response = client.get(realm, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise errors.Unavailable(
                f"cannot reach the token service of registry {self.host} at {realm_host} ({type(exc).__name__})"
            ) from None
        with closing(response):
            if response.status_code in (401, 403):
                if creds:
                    raise self._rejected(scope)
                raise self._need_credentials(scope)
            if response.status_code != 200:
                raise errors.Unavailable(
                    f"token service of registry {self.host} answered HTTP {response.status_code}"
                )
            try:
                doc = response.json()
            except ValueError:
                raise errors.CtrError(f"token service of registry {self.host} sent a reply that is not JSON") from None
        value = str(doc.get("token") or doc.get("access_token") or "")
        if not value:
            raise errors.CtrError(f"token service of registry {self.host} sent no token")
        try:
            ttl = float(doc.get("expires_in") or _DEFAULT_TOKEN_TTL)
        except (TypeError, ValueError):
            ttl = _DEFAULT_TOKEN_TTL
        log.debug("got a bearer token for %s scope %r, valid %.0fs", self.host, scope, ttl)
        return _Token(value, time.monotonic() + max(ttl, _TOKEN_MARGIN + 1))


def _scope_repo(scope: str) -> str:
    parts = scope.split(":")
    return parts[1] if len(parts) >= 3 and parts[0] == "repository" else ""
