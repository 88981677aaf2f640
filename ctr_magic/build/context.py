"""The build context: a host directory, filtered by its ``.dockerignore``, the sources a COPY
names in it (globs as Docker matches them), their content hashes (for the cache) and the tar of
it all that the Docker Engine's ``/build`` takes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import posixpath
import re
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Optional

from .. import errors

DOCKERIGNORE = ".dockerignore"
_GLOB_CHARS = re.compile(r"[*?\[]")
_HASH_CHUNK = 1 << 20


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore pattern syntax: ``*``, ``?``, ``[...]`` within a path element, ``**`` across."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1:end].replace("\\", "\\\\")
                out.append(f"[{'^' + body[1:] if body.startswith('!') else body}]")
                i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("^" + "".join(out) + "$")


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    exclude: bool


class IgnoreRules:
    """The patterns of a ``.dockerignore``; the last pattern that matches a path (or a parent) decides."""

    def __init__(self, text: str = "") -> None:
        self.rules: list[_Rule] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclude = not line.startswith("!")
            line = line.lstrip("!").strip()
            cleaned = posixpath.normpath(line).lstrip("/")
            if cleaned in ("", "."):
                continue
            self.rules.append(_Rule(_pattern_regex(cleaned), exclude))

    def ignored(self, rel: str) -> bool:
        if not self.rules:
            return False
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for rule in self.rules:
            if any(rule.regex.match(p) for p in prefixes):
                result = rule.exclude
        return result


class BuildContext:
    """A context directory and its ignore rules (see module docstring)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        if not os.path.isdir(self.root):
            raise errors.InvalidArgument(f"build context {root!r} is not a directory",
                                         hint="give the directory holding the files the Dockerfile copies")
        path = os.path.join(self.root, DOCKERIGNORE)
        text = ""
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        self.ignore = IgnoreRules(text)
        self._hashes: dict[str, str] = {}

    def host_path(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    # -- walking -------------------------------------------------------------------------------------
    def walk(self, rel: str = "") -> Iterator[str]:
        """Every path below *rel* (relative to the context), in sorted order, ignored ones left out."""
        base = self.host_path(rel)
        for name in sorted(os.listdir(base)):
            child = f"{rel}/{name}" if rel else name
            if self.ignore.ignored(child):
                # An exception (!pattern) may still bring back something inside an ignored dir.
                if os.path.isdir(os.path.join(base, name)) and not os.path.islink(os.path.join(base, name)) \
                        and any(not r.exclude for r in self.ignore.rules):
                    yield from (p for p in self.walk(child) if not self.ignore.ignored(p))
                continue
            yield child
            if os.path.isdir(os.path.join(base, name)) and not os.path.islink(os.path.join(base, name)):
                yield from self.walk(child)

    def sources(self, pattern: str, what: str) -> list[str]:
        """Context paths a COPY source names (``""`` is the context itself); NotFound when none."""
        cleaned = posixpath.normpath(pattern).lstrip("/")
        if cleaned.startswith(".."):
            raise errors.InvalidArgument(f"{what}: {pattern!r} is outside the build context")
        if cleaned in (".", ""):
            return [""]
        if _GLOB_CHARS.search(cleaned):
            depth = cleaned.count("/")
            found = [p for p in self.walk() if p.count("/") == depth and fnmatch.fnmatchcase(p, cleaned)]
        else:
            found = [cleaned] if os.path.lexists(self.host_path(cleaned)) and not self.ignore.ignored(cleaned) \
                else []
        if not found:
            raise errors.NotFound(f"{what}: {pattern!r} not found in the build context {self.root} "
                                  "(or excluded by .dockerignore)", hint="check the path and .dockerignore")
        return found

    # -- hashing -------------------------------------------------------------------------------------------
    def file_hash(self, rel: str) -> str:
        hit = self._hashes.get(rel)
        if hit is None:
            digest = hashlib.sha256()
            with open(self.host_path(rel), "rb") as fh:
                while chunk := fh.read(_HASH_CHUNK):
                    digest.update(chunk)
            hit = self._hashes[rel] = digest.hexdigest()
        return hit

    def content_hash(self, rels: list[str]) -> str:
        """One digest over the sources' paths, types, modes, link targets and file contents."""
        digest = hashlib.sha256()
        for rel in rels:
            paths = [rel]
            if os.path.isdir(self.host_path(rel)) and not os.path.islink(self.host_path(rel)):
                paths += list(self.walk(rel))
            for path in paths:
                st = os.lstat(self.host_path(path))
                digest.update(f"{path}\0{st.st_mode:o}\0".encode())
                if stat.S_ISLNK(st.st_mode):
                    digest.update(os.readlink(self.host_path(path)).encode())
                elif stat.S_ISREG(st.st_mode):
                    digest.update(self.file_hash(path).encode())
                digest.update(b"\n")
        return "sha256:" + digest.hexdigest()

    # -- the tar for the Engine API ---------------------------------------------------------------------
    def write_tar(self, out: BinaryIO, extra: Optional[dict[str, bytes]] = None) -> None:
        """The context (ignored paths left out) plus *extra* files, as an uncompressed tar."""
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel in self.walk():
                tar.add(self.host_path(rel), arcname=rel, recursive=False)
            for name, data in (extra or {}).items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))


__all__ = ["DOCKERIGNORE", "BuildContext", "IgnoreRules"]
