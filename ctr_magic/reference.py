"""Image reference parsing and normalisation, following Docker's rules.

``busybox`` -> ``docker.io/library/busybox:latest``;
``localhost:5000/app@sha256:...`` keeps its registry and digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .constants import DEFAULT_REGISTRY, DEFAULT_TAG, LEGACY_DEFAULT_REGISTRY, REGISTRY_V2_HOST
from .errors import InvalidArgument

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}\Z")
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}\Z")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?\Z|\[[0-9a-fA-F:]+\](?::[0-9]+)?\Z"
)
_MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    """A fully normalised image reference."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """``domain/path``, without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def object(self) -> str:
        """What to ask the registry for: the digest when known, else the tag."""
        return self.digest or self.tag

    @property
    def registry_host(self) -> str:
        """The host to contact (Docker Hub's API lives on another host name)."""
        return REGISTRY_V2_HOST if self.domain == DEFAULT_REGISTRY else self.domain

    def __str__(self) -> str:
        return self.name + self._suffix()

    def _suffix(self) -> str:
        """``:tag``, ``@digest`` or both, as given."""
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def familiar(self) -> str:
        """The short form people type: ``busybox:latest`` for Docker Hub library images."""
        path = self.path
        if self.domain == DEFAULT_REGISTRY:
            if path.startswith("library/") and path.count("/") == 1:
                path = path[len("library/"):]
            return path + self._suffix()
        return self.name + self._suffix()

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, self.tag, digest)


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return DEFAULT_REGISTRY, name


def parse_reference(ref: str) -> Reference:
    """Parse and normalise *ref*; raise :class:`InvalidArgument` naming what is wrong."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidArgument("image reference is empty", hint="give a name such as busybox:latest")
    text = ref.strip()
    if any(ch.isspace() for ch in text):
        raise InvalidArgument(f"image reference {ref!r} contains white space")
    if text.startswith(("http://", "https://")):
        raise InvalidArgument(f"image reference {ref!r} must not contain a URL scheme",
                              hint="drop the http(s):// prefix")

    digest = ""
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidArgument(f"image reference {ref!r} has a malformed digest {digest!r}",
                                  hint="expected algorithm:hex, e.g. sha256:<64 hex digits>")
        if digest.startswith("sha256:") and not _SHA256.match(digest):
            raise InvalidArgument(f"image reference {ref!r} has a malformed sha256 digest",
                                  hint="a sha256 digest has 64 lowercase hex digits")

    tag = ""
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidArgument(f"image reference {ref!r} has an invalid tag {tag!r}",
                                  hint="tags use letters, digits, '_', '.', '-' (max 128)")

    if not text:
        raise InvalidArgument(f"image reference {ref!r} has no repository name")
    domain, path = _split_domain(text)
    if domain == LEGACY_DEFAULT_REGISTRY:
        domain = DEFAULT_REGISTRY
    if not _DOMAIN.match(domain):
        raise InvalidArgument(f"image reference {ref!r} has an invalid registry {domain!r}")
    if path != path.lower():
        raise InvalidArgument(f"image reference {ref!r}: repository name must be lowercase",
                              hint=f"try {path.lower()!r}")
    for component in path.split("/"):
        if not _COMPONENT.match(component):
            raise InvalidArgument(f"image reference {ref!r} has an invalid path component {component!r}",
                                  hint="use lowercase letters, digits and single separators . _ -")
    if domain == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if len(domain) + 1 + len(path) > _MAX_NAME:
        raise InvalidArgument(f"image reference {ref!r} is longer than {_MAX_NAME} characters")
    if not tag and not digest:
        tag = DEFAULT_TAG
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def normalize(ref: str) -> str:
    """``busybox`` -> ``docker.io/library/busybox:latest``."""
    return str(parse_reference(ref))


def is_digest(value: str) -> bool:
    return bool(_SHA256.match(value))


def match_stored_name(ref: str, stored_names: list[str]) -> Optional[str]:
    """The contract's get_image fallback: exact, without ``docker.io/library/``, then suffix match."""
    candidates = [ref]
    try:
        full = normalize(ref)
        candidates.append(full)
    except InvalidArgument:
        full = ref
    if full.startswith(f"{DEFAULT_REGISTRY}/library/"):
        candidates.append(full[len(f"{DEFAULT_REGISTRY}/library/"):])
    names = set(stored_names)
    for candidate in candidates:
        if candidate in names:
            return candidate
    for name in stored_names:
        if name == ref or name.endswith("/" + ref) or ref.endswith("/" + name):
            return name
    return None
