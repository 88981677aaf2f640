"""File trees for image layers, and writing them as deterministic tar entries.

A tree maps paths to entries (:class:`File`, :class:`StreamFile`, :class:`Dir`, :class:`Symlink`,
:class:`Whiteout`); ``bytes`` and ``str`` values are shorthand for ``File(data)``.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO, Union

from . import errors


@dataclass(frozen=True)
class File:
    """A regular file with in-memory content."""

    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class StreamFile:
    """A regular file whose content is produced by ``opener()`` (read exactly ``size`` bytes)."""

    size: int
    opener: Callable[[], BinaryIO]
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Symlink:
    target: str
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Whiteout:
    """Deletes the path from the layers below (written as ``.wh.<name>``)."""


Entry = Union[File, StreamFile, Dir, Symlink, Whiteout]
#: path -> entry; ``bytes`` and ``str`` values are shorthand for ``File(data)``.
Tree = Mapping[str, Union[Entry, bytes, str]]


def _norm_path(path: str) -> str:
    if not path or not path.strip("/"):
        raise errors.InvalidArgument(f"invalid path in layer tree: {path!r}")
    norm = posixpath.normpath("/" + path).lstrip("/")
    if ".." in path.split("/") or "\0" in norm:
        raise errors.InvalidArgument(f"invalid path in layer tree: {path!r}")
    return norm


def sorted_entries(tree: Tree) -> list[tuple[str, Entry]]:
    """Normalised, parent-first sorted entries; missing parent directories are added."""
    out: dict[str, Entry] = {}
    for raw, value in tree.items():
        path = _norm_path(raw)
        if isinstance(value, str):
            value = File(value.encode())
        elif isinstance(value, bytes | bytearray):
            value = File(bytes(value))
        if not isinstance(value, File | StreamFile | Dir | Symlink | Whiteout):
            raise errors.InvalidArgument(f"unsupported tree entry for {raw!r}: {type(value).__name__}")
        if isinstance(value, Whiteout):
            parent, name = posixpath.split(path)
            path = posixpath.join(parent, ".wh." + name)
        out[path] = value
    for path in list(out):
        parent = posixpath.dirname(path)
        while parent:
            out.setdefault(parent, Dir())
            parent = posixpath.dirname(parent)
    return sorted(out.items(), key=lambda kv: kv[0].split("/"))


def add_tar_entry(tar: tarfile.TarFile, path: str, entry: Entry) -> None:
    info = tarfile.TarInfo(path)
    info.mtime = 0
    info.uname = info.gname = ""
    if isinstance(entry, Dir):
        info.type = tarfile.DIRTYPE
        info.mode, info.uid, info.gid = entry.mode, entry.uid, entry.gid
        tar.addfile(info)
    elif isinstance(entry, Symlink):
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
        info.mode, info.uid, info.gid = 0o777, entry.uid, entry.gid
        tar.addfile(info)
    elif isinstance(entry, File):
        info.mode, info.uid, info.gid = entry.mode, entry.uid, entry.gid
        info.size = len(entry.data)
        tar.addfile(info, io.BytesIO(entry.data))
    elif isinstance(entry, StreamFile):
        info.mode, info.uid, info.gid = entry.mode, entry.uid, entry.gid
        info.size = entry.size
        with contextlib.closing(entry.opener()) as src:
            tar.addfile(info, src)
    else:  # whiteout (already renamed to .wh.<name>)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(b""))


__all__ = ["Dir", "Entry", "File", "StreamFile", "Symlink", "Tree", "Whiteout", "add_tar_entry", "sorted_entries"]
