"""``ctr-lock.json``: image references pinned to digests, for reproducible notebooks.

``%ctr lock`` writes every image ref the session used with the digest it resolved to. When the
file exists, pulls and runs use ``name@digest`` instead of the tag, so a rerun gets the same
bytes even after the tag moved in the registry.

Format (sorted keys, stable across runs)::

    {"version": 1, "images": {"127.0.0.1:5000/ctr-magic/busybox:latest": "sha256:..."}}
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..atomicfile import write_text_atomic
from ..errors import InvalidArgument
from ..reference import is_digest, parse_reference

log = logging.getLogger(__name__)

LOCK_FILE_NAME = "ctr-lock.json"
LOCK_VERSION = 1


def lock_key(ref: str) -> str:
    """The normalised form refs are stored under (``busybox`` -> ``docker.io/library/busybox:latest``)."""
    return str(parse_reference(ref))


def pinned(ref: str, digest: str) -> str:
    """``repo:tag`` + digest -> ``repo@digest`` (what a pull by digest asks the registry for)."""
    return f"{parse_reference(ref).name}@{digest}"


@dataclass
class LockFile:
    path: Path
    images: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Optional[LockFile]:
        """The lock file at ``path``, or None when there is none; a broken file is a one-line error."""
        p = Path(path)
        try:
            raw = p.read_text()
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise InvalidArgument(f"lock file {p} is not valid JSON ({exc})", hint="fix or delete it") from None
        if not isinstance(doc, dict) or doc.get("version") != LOCK_VERSION or not isinstance(doc.get("images"), dict):
            raise InvalidArgument(f"lock file {p} has an unknown format", hint=f"expected version {LOCK_VERSION}")
        images: dict[str, str] = {}
        for ref, digest in doc["images"].items():
            if not isinstance(digest, str) or not is_digest(digest):
                raise InvalidArgument(f"lock file {p}: {ref!r} maps to {digest!r}, not a sha256 digest")
            images[lock_key(ref)] = digest
        return cls(p, images)

    def digest_for(self, ref: str) -> Optional[str]:
        """The locked digest of ``ref``; refs that carry a digest already are never rewritten."""
        parsed = parse_reference(ref)
        if parsed.digest:
            return None
        return self.images.get(str(parsed))

    def resolve(self, ref: str) -> tuple[str, Optional[str]]:
        """(ref to use, locked digest or None)."""
        digest = self.digest_for(ref)
        return (pinned(ref, digest), digest) if digest else (ref, None)

    def save(self) -> None:
        doc = {"version": LOCK_VERSION, "images": dict(sorted(self.images.items()))}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(str(self.path), json.dumps(doc, indent=2, sort_keys=True) + "\n")
        log.info("wrote %s (%d images)", self.path, len(self.images))


def write_lock(path: str | os.PathLike[str], used: Mapping[str, str], *, merge: bool = True) -> LockFile:
    """Write ``used`` (ref -> digest) to ``path``; with ``merge``, keep entries already there."""
    existing = LockFile.load(path) if merge else None
    lock = existing or LockFile(Path(path))
    for ref, digest in used.items():
        if parse_reference(ref).digest:
            continue  # already pinned by the user
        lock.images[lock_key(ref)] = digest
    lock.save()
    return lock


__all__ = ["LOCK_FILE_NAME", "LockFile", "lock_key", "pinned", "write_lock"]
