"""An OCI distribution API client for one registry host, on httpx.

Resolves references to manifests, streams blobs (resuming with ``Range`` after a cut), uploads
blobs and manifests. Every failure becomes a :class:`~ctr_magic.errors.CtrError` naming what was
being done; credentials never appear in messages or logs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from typing import Any, Optional

import httpx

from .. import __version__, errors
from ..reference import Reference
from .auth import RegistryAuth, parse_www_authenticate
from .cache import ClientCache
from .dockerconfig import load_credentials
from .manifests import MANIFEST_ACCEPT, MAX_MANIFEST_SIZE, Descriptor, media_type_of
from .options import Credentials, RegistryOptions, host_name, is_local_host
from .responses import describe, error_codes, error_text, not_found_message
from .retry import RetryPolicy

log = logging.getLogger(__name__)

USER_AGENT = f"ctr-magic/{__version__}"
#: A download slower than a chunk per this many seconds is passed on (and reported) in smaller pieces.
FLUSH_AFTER = 0.25


class DigestMismatch(errors.CtrError):
    """A blob's bytes do not hash to the digest that names it."""


class RegistryClient:
    """Talks to one registry host (``127.0.0.1:5000``, ``registry-1.docker.io`` ...)."""

    def __init__(self, host: str, options: Optional[RegistryOptions] = None,
                 retry: Optional[RetryPolicy] = None, cache: Optional[ClientCache] = None) -> None:
        self.host = host
        self.options = options or RegistryOptions()
        self.retry = retry or RetryPolicy(attempts=max(1, self.options.max_attempts))
        self._cache = cache or ClientCache()
        self._http = self._new_http(limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
                                    trust_env=not is_local_host(host))
        self._token_http: Optional[httpx.Client] = None
        self.auth = RegistryAuth(host, self.options, self._load_credentials, self._token_client)
        self._base = ""
        self._base_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RegistryClient(host={self.host!r}, base={self._base or 'not probed'!r})"

    # -- plumbing -------------------------------------------------------------------------------
    def _new_http(self, **extra: Any) -> httpx.Client:
        return httpx.Client(
            verify=self._cache.ssl_context(self.host, self.options.ca_file),
            timeout=httpx.Timeout(self.options.read_timeout, connect=self.options.connect_timeout),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=True,
            **extra,
        )

    def _load_credentials(self) -> Optional[Credentials]:
        for key in (self.host, host_name(self.host)):
            if key in self.options.credentials:
                return self.options.credentials[key]
        return load_credentials(self.host, self.options.docker_config)

    def _token_client(self) -> httpx.Client:
        if self._token_http is None:
            self._token_http = self._new_http()
        return self._token_http

    def close(self) -> None:
        self._http.close()
        if self._token_http is not None:
            self._token_http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        """``https://host`` (or ``http://host`` where allowed and TLS is not spoken), probed once."""
        with self._base_lock:
            if not self._base:
                known = self._cache.base(self.host)
                if known and self._still_speaks(known):
                    self._base = known
                else:
                    self._base = self._probe()
                    self._cache.remember_base(self.host, self._base)
            return self._base

    def _still_speaks(self, base: str) -> bool:
        """A quick ``/v2/`` check on a scheme learnt earlier (it also learns the auth challenge)."""
        try:
            response = self._http.get(f"{base}/v2/")
        except httpx.TransportError:
            self._cache.forget_base(self.host)
            return False
        with closing(response):
            self._learn_challenge(response)
            return response.status_code in (200, 401, 404)

    def _learn_challenge(self, response: httpx.Response) -> None:
        if response.status_code == 401:
            self.auth.learn(parse_www_authenticate(response.headers.get_list("www-authenticate")))

    def _probe(self) -> str:
        """``GET /v2/`` over HTTPS, then plain HTTP where allowed; learn the auth challenge on the way."""
        schemes = ["https", "http"] if self.options.allows_plain_http(self.host) else ["https"]
        reasons = []
        for scheme in schemes:
            fallback = scheme == "https" and len(schemes) > 1
            try:
                response = self._ping(f"{scheme}://{self.host}/v2/", retries=not fallback)
            except httpx.TransportError as exc:
                reasons.append(f"{scheme}: {describe(exc)}")
                if fallback:
                    continue
                break
            with closing(response):
                self._learn_challenge(response)
                if response.status_code not in (200, 401, 404):
                    raise errors.Unavailable(
                        f"registry {self.host} answered HTTP {response.status_code} to its API check (/v2/)"
                    )
            log.debug("registry %s speaks %s", self.host, scheme)
            return f"{scheme}://{self.host}"
        hint = "is it running?"
        if not self.options.allows_plain_http(self.host):
            hint += f" If {self.host} only speaks plain HTTP, list it in insecure_registries"
        raise errors.Unavailable(f"cannot reach registry {self.host} ({'; '.join(reasons)})", hint=hint)

    def _ping(self, url: str, *, retries: bool) -> httpx.Response:
        attempts = self.retry.attempts if retries else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.get(url)
            except httpx.TransportError as exc:
                if attempt == attempts or not self.retry.retryable_error(exc):
                    raise
                self.retry.sleep(self.retry.delay(attempt))
                continue
            if self.retry.retryable_status(response.status_code) and attempt < attempts:
                response.close()
                self.retry.sleep(self.retry.delay(attempt, response.headers.get("retry-after")))
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def url(self, path: str) -> str:
        return self.base_url + path

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Optional[dict[str, str]] = None,
        content: Optional[bytes] = None,
        stream: bool = False,
        cancel: Optional[threading.Event] = None,
        timeout: Optional[httpx.Timeout] = None,
    ) -> httpx.Response:
        """Send with bounded retries on transient failures; returns the final response (any status)."""
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        for attempt in range(1, self.retry.attempts + 1):
            if cancel is not None and cancel.is_set():
                raise errors.Interrupted(f"{what}: cancelled")
            request = self._http.build_request(method, url, headers=headers, content=content, **extra)
            try:
                response = self._http.send(request, auth=self.auth, stream=stream)
            except httpx.TransportError as exc:
                if not self.retry.retryable_error(exc) or attempt == self.retry.attempts:
                    raise errors.Unavailable(f"{what}: registry {self.host} failed ({describe(exc)})") from None
                log.debug("%s: %s, retrying (%d/%d)", what, describe(exc), attempt, self.retry.attempts)
                self.retry.sleep(self.retry.delay(attempt), cancel)
                continue
            if self.retry.retryable_status(response.status_code) and attempt < self.retry.attempts:
                retry_after = response.headers.get("retry-after")
                response.close()
                log.debug("%s: HTTP %d, retrying (%d/%d)", what, response.status_code, attempt, self.retry.attempts)
                self.retry.sleep(self.retry.delay(attempt, retry_after), cancel)
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def raise_for_status(self, response: httpx.Response, what: str, *, not_found: str = "") -> None:
        """Map a failed response to a CtrError (the body is read for the registry's error codes)."""
        status = response.status_code
        if status < 400:
            return
        detail = error_text(response)
        suffix = f" ({detail})" if detail else ""
        if status == 404:
            raise errors.NotFound(not_found or f"{what}: not found on registry {self.host}{suffix}")
        if status == 401:
            raise errors.Unauthorized(f"{what}: registry {self.host} requires credentials{suffix}")
        if status == 403:
            raise errors.Unauthorized(f"{what}: registry {self.host} denied access{suffix}",
                                      hint="check that the account may access this repository")
        if status == 429 or status >= 500:
            raise errors.Unavailable(f"{what}: registry {self.host} answered HTTP {status}{suffix}",
                                     hint="try again later")
        if status == 400 and "DIGEST_INVALID" in error_codes(response):
            raise DigestMismatch(f"{what}: registry {self.host} found the digest invalid{suffix}")
        raise errors.CtrError(f"{what}: registry {self.host} answered HTTP {status}{suffix}")

    # -- manifests ------------------------------------------------------------------------------
    def get_manifest(self, ref: Reference, reference: str = "", *,
                     cancel: Optional[threading.Event] = None) -> tuple[bytes, Descriptor]:
        """Fetch a manifest or index by tag or digest; returns its bytes and descriptor (digest checked)."""
        reference = reference or ref.object
        what = f"fetching manifest {ref.name}:{reference}" if ":" not in reference else \
            f"fetching manifest {ref.name}@{reference}"
        response = self.request("GET", self.url(f"/v2/{ref.path}/manifests/{reference}"), what=what,
                                headers={"Accept": MANIFEST_ACCEPT}, stream=True, cancel=cancel)
        with closing(response):
            if response.status_code == 404:
                codes = error_codes(response)
                tags = None if "NAME_UNKNOWN" in codes else self.list_tags(ref.path, cancel=cancel)
                self.raise_for_status(response, what, not_found=not_found_message(ref, reference, codes, tags))
            self.raise_for_status(response, what)
            declared = response.headers.get("content-length")
            if declared and int(declared) > MAX_MANIFEST_SIZE:
                raise errors.CtrError(f"{what}: manifest is larger than {MAX_MANIFEST_SIZE} bytes")
            data = bytearray()
            for chunk in response.iter_raw():
                data += chunk
                if len(data) > MAX_MANIFEST_SIZE:
                    raise errors.CtrError(f"{what}: manifest is larger than {MAX_MANIFEST_SIZE} bytes")
            header_type = response.headers.get("content-type", "")
            header_digest = response.headers.get("docker-content-digest", "")
        raw = bytes(data)
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"{what}: the registry served content with digest {digest}")
        if header_digest.startswith("sha256:") and header_digest != digest:
            log.warning("%s: registry says digest %s but the bytes hash to %s", what, header_digest, digest)
        return raw, Descriptor(media_type_of(raw, header_type), digest, len(raw))

    def list_tags(self, repo: str, *, cancel: Optional[threading.Event] = None) -> Optional[list[str]]:
        """The repository's tags, or None when the registry does not know the repository."""
        what = f"listing tags of {self.host}/{repo}"
        response = self.request("GET", self.url(f"/v2/{repo}/tags/list"), what=what, cancel=cancel)
        with closing(response):
            if response.status_code == 404:
                return None
            self.raise_for_status(response, what)
            try:
                return [str(tag) for tag in response.json().get("tags") or []]
            except (ValueError, AttributeError):
                return []

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        """Upload a manifest under a tag or digest; returns its digest."""
        what = f"pushing manifest {self.host}/{repo}:{reference}"
        response = self.request("PUT", self.url(f"/v2/{repo}/manifests/{reference}"), what=what,
                                headers={"Content-Type": media_type}, content=data)
        with closing(response):
            self.raise_for_status(response, what)
        return "sha256:" + hashlib.sha256(data).hexdigest()

    # -- blobs ----------------------------------------------------------------------------------
    def iter_blob(
        self,
        repo: str,
        desc: Descriptor,
        *,
        offset: int = 0,
        verify: bool = True,
        cancel: Optional[threading.Event] = None,
        chunk_size: int = 0,
    ) -> Iterator[bytes]:
        """Stream a blob from *offset*, resuming with ``Range`` when the connection breaks.

        With *verify* (and offset 0) the bytes are hashed as they pass and a mismatch raises
        :class:`DigestMismatch` after the last chunk; the size is always checked.
        """
        what = f"fetching blob {desc.digest} of {self.host}/{repo}"
        chunk_size = chunk_size or self.options.chunk_size
        hasher = hashlib.sha256() if verify and offset == 0 and desc.digest.startswith("sha256:") else None
        position = offset
        failures = 0
        url = self.url(f"/v2/{repo}/blobs/{desc.digest}")
        stall = self.options.stall_timeout
        timeout = httpx.Timeout(self.options.read_timeout, connect=self.options.connect_timeout, read=stall) \
            if stall else httpx.Timeout(None, connect=self.options.connect_timeout)
        while True:
            headers = {"Range": f"bytes={position}-"} if position else None
            response = self.request("GET", url, what=what, headers=headers, stream=True, cancel=cancel,
                                    timeout=timeout)
            try:
                if response.status_code == 404:
                    self.raise_for_status(response, what, not_found=f"{what}: the registry has no such blob")
                if response.status_code == 416 and position == desc.size:
                    break
                self.raise_for_status(response, what)
                skip = position if (position and response.status_code == 200) else 0
                try:
                    for chunk in _gather(response.iter_raw(), chunk_size, cancel):
                        if skip:
                            if len(chunk) <= skip:
                                skip -= len(chunk)
                                continue
                            chunk, skip = chunk[skip:], 0
                        position += len(chunk)
                        if position > desc.size:
                            raise DigestMismatch(f"{what}: the registry sent more than the {desc.size} bytes expected")
                        if hasher is not None:
                            hasher.update(chunk)
                        yield chunk
                except httpx.ReadTimeout:
                    raise errors.Unavailable(
                        f"{what}: registry {self.host} sent no byte for {stall:g}s (stalled after {position} of "
                        f"{desc.size} bytes)",
                        hint="retry later, or raise RegistryOptions.stall_timeout for a slow registry") from None
                except httpx.TransportError as exc:
                    failures += 1
                    if failures >= self.retry.attempts or not self.retry.retryable_error(exc):
                        raise errors.Unavailable(
                            f"{what}: the connection to registry {self.host} broke after {position} of "
                            f"{desc.size} bytes ({describe(exc)})"
                        ) from None
                    log.debug("%s: %s at byte %d, resuming", what, describe(exc), position)
                    self.retry.sleep(self.retry.delay(failures), cancel)
                    continue
            finally:
                response.close()
            if position < desc.size:
                failures += 1
                if failures >= self.retry.attempts:
                    raise errors.Unavailable(f"{what}: the registry sent {position} of {desc.size} bytes")
                self.retry.sleep(self.retry.delay(failures), cancel)
                continue
            break
        if hasher is not None:
            got = "sha256:" + hasher.hexdigest()
            if got != desc.digest:
                raise DigestMismatch(f"{what}: the bytes received hash to {got}",
                                     hint="the registry's copy is corrupt, or something altered it on the way")

    def read_blob(self, repo: str, desc: Descriptor, *, cancel: Optional[threading.Event] = None) -> bytes:
        return b"".join(self.iter_blob(repo, desc, cancel=cancel))

    def blob_exists(self, repo: str, digest: str) -> bool:
        what = f"checking blob {digest} on {self.host}/{repo}"
        response = self.request("HEAD", self.url(f"/v2/{repo}/blobs/{digest}"), what=what)
        with closing(response):
            if response.status_code == 404:
                return False
            self.raise_for_status(response, what)
            return True

    def upload_blob(
        self,
        repo: str,
        desc: Descriptor,
        chunks: Callable[[], Iterable[bytes]],
        *,
        cancel: Optional[threading.Event] = None,
    ) -> None:
        """Upload a blob in one streamed PUT (POST for a session, then PUT with the digest).

        *chunks* is called once per try, so a transient failure restarts the upload cleanly.
        """
        what = f"pushing blob {desc.digest} to {self.host}/{repo}"
        for attempt in range(1, self.retry.attempts + 1):
            response = self.request("POST", self.url(f"/v2/{repo}/blobs/uploads/"), what=what, cancel=cancel)
            with closing(response):
                self.raise_for_status(response, what)
                location = response.headers.get("location", "")
            if not location:
                raise errors.CtrError(f"{what}: the registry gave no upload location")
            target = httpx.URL(self.base_url).join(location).copy_merge_params({"digest": desc.digest})
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
            request = self._http.build_request("PUT", target, headers=headers, content=iter(chunks()))
            try:
                response = self._http.send(request, auth=self.auth)
            except httpx.TransportError as exc:
                if attempt == self.retry.attempts or not self.retry.retryable_error(exc):
                    raise errors.Unavailable(f"{what}: registry {self.host} failed ({describe(exc)})") from None
                self.retry.sleep(self.retry.delay(attempt), cancel)
                continue
            with closing(response):
                if self.retry.retryable_status(response.status_code) and attempt < self.retry.attempts:
                    self.retry.sleep(self.retry.delay(attempt, response.headers.get("retry-after")), cancel)
                    continue
                self.raise_for_status(response, what)
            return


def _gather(pieces: Iterator[bytes], size: int, cancel: Optional[threading.Event] = None,
            flush_after: float = FLUSH_AFTER) -> Iterator[bytes]:
    """Join the network's small reads into chunks of at least *size* bytes (one copy each).

    A slow download is passed on every *flush_after* seconds whatever its size, so progress moves for
    blobs of any size; and what arrived before the connection broke is passed on before the error,
    so the download resumes (``Range``) after it instead of starting again.
    """
    parts: list[bytes] = []
    pending = 0
    last = time.monotonic()
    try:
        for piece in pieces:
            if cancel is not None and cancel.is_set():
                raise errors.Interrupted("blob download cancelled")
            parts.append(piece)
            pending += len(piece)
            now = time.monotonic()
            if pending >= size or now - last >= flush_after:
                yield parts[0] if len(parts) == 1 else b"".join(parts)
                parts, pending, last = [], 0, now
    except httpx.TransportError:
        if parts:
            yield b"".join(parts)
        raise
    if parts:
        yield b"".join(parts)


__all__ = ["ClientCache", "DigestMismatch", "RegistryClient"]
