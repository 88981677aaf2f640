"""Copying files in and out of containers (``%ctr cp``): tar streams and paths inside a root.

Every backend moves a tar, as ``docker cp`` does: its top entry is the copied file or directory,
named as it should land. The Engine API speaks tar itself (``/containers/{id}/archive``); on
containerd the same tar is made or unpacked on the host inside the container's root. Unpacking
uses :mod:`tarfile`'s ``tar`` filter: nothing lands outside the destination (absolute names,
``..`` and links that lead out are refused), modes are kept but for setuid/setgid/sticky and
group/other write bits.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import queue
import stat
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Optional

from . import errors

Progress = Callable[[int, int], None]  # (bytes done, bytes in all or 0 when unknown)
_CHUNK = 1 << 20
_READ = 1 << 16
_MAX_LINKS = 40


# -- paths inside a container's root ---------------------------------------------------------------
def secure_join(root: str, path: str) -> str:
    """The host path of *path* inside the directory tree *root*, symlinks resolved as the container sees them.

    An absolute link restarts at *root*, ``..`` stops at it: the answer never leaves *root*. The
    last component may be missing (a file about to be made).
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise errors.InvalidArgument(f"{path}: too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


# -- making a tar ----------------------------------------------------------------------------------
class _QueueWriter:
    """The file object a background tarfile writes into; the reader takes chunks off the queue."""

    def __init__(self, chunks: queue.Queue[Any]) -> None:
        self._chunks = chunks
        self._pending = bytearray()

    def write(self, data: bytes) -> int:
        self._pending += data
        if len(self._pending) >= _CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._pending:
            self._chunks.put(bytes(self._pending))
            self._pending.clear()


def tree_size(path: str) -> int:
    """Bytes in the regular files under *path* (the file's size for a file)."""
    if not os.path.isdir(path) or os.path.islink(path):
        return os.lstat(path).st_size
    total = 0
    for parent, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(parent, name)
            if not os.path.islink(full):
                total += os.lstat(full).st_size
    return total


def tar_stream(path: str, arcname: str, *, progress: Optional[Progress] = None) -> Iterator[bytes]:
    """A tar of *path* (a file or a whole directory, links kept as links) whose top entry is *arcname*."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        raise errors.NotFound(f"{path} does not exist") from None
    total = tree_size(path) if progress is not None else 0
    chunks: queue.Queue[Any] = queue.Queue(maxsize=8)
    stop = threading.Event()
    done = [0]

    def count(info: tarfile.TarInfo) -> tarfile.TarInfo:
        if progress is not None and info.isfile():
            done[0] += info.size
            progress(done[0], total)
        return info

    def produce() -> None:
        writer = _QueueWriter(chunks)
        try:
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                              bufsize=_CHUNK) as tar:
                tar.copybufsize = _CHUNK  # the default 16 KiB pieces cost more calls than the copy itself
                tar.add(path, arcname=arcname, recursive=True, filter=lambda i: None if stop.is_set() else count(i))
            writer.flush()
            chunks.put(None)
        except BaseException as exc:  # handed to the reader
            chunks.put(exc)

    thread = threading.Thread(target=produce, name="ctr-magic-tar", daemon=True)
    thread.start()
    try:
        while True:
            item = chunks.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # let a blocked producer finish
            with contextlib.suppress(queue.Empty):
                chunks.get(timeout=0.1)


# -- unpacking a tar -------------------------------------------------------------------------------
class _ChunkReader:
    """A read-only file over an iterator of byte chunks (for tarfile's stream mode)."""

    def __init__(self, chunks: Iterable[bytes], progress: Optional[Progress], total: int) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self._progress = progress
        self._total = total
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
            self.count += len(chunk)
            if self._progress is not None:
                self._progress(self.count, self._total)
        take = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        out = bytes(self._buffer[:take])
        del self._buffer[:take]  # cheap: a bytearray drops its front without moving the rest
        return out


def unpack(chunks: Iterable[bytes], dest_dir: str, *, rename_top: str = "", progress: Optional[Progress] = None,
           total: int = 0) -> int:
    """Unpack a tar stream into *dest_dir* (which must exist); the top entry becomes *rename_top* when given.

    Returns the bytes read. Raises InvalidArgument for a member that would land outside *dest_dir*.
    """
    reader = _ChunkReader(chunks, progress, total)
    top = ""

    def rename(member: tarfile.TarInfo, path: str) -> Optional[tarfile.TarInfo]:
        nonlocal top
        name = member.name.lstrip("/")
        if rename_top:
            first, _, rest = name.partition("/")
            if not top:
                top = first
            if first == top:
                name = posixpath.join(rename_top, rest) if rest else rename_top
        member = member.replace(name=name, deep=False)
        return tarfile.tar_filter(member, path)

    try:
        # tarfile's stream reader re-slices its buffer on every read: 64 KiB pieces keep that cheap.
        with tarfile.open(fileobj=reader, mode="r|", bufsize=_READ) as tar:  # type: ignore[call-overload]
            tar.copybufsize = _READ
            tar.extractall(dest_dir, filter=rename)
    except tarfile.FilterError as exc:
        raise errors.InvalidArgument(f"refused to unpack into {dest_dir}: {exc}") from None
    except tarfile.TarError as exc:
        raise errors.InvalidArgument(f"not a tar stream ({exc})") from None
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
            raise errors.InvalidArgument(f"cannot copy into {dest_dir}: {exc.strerror} ({exc.filename})") from None
        raise
    return reader.count


def local_source(source: str) -> str:
    """The absolute path of a local file or directory to copy in; NotFound in one line when it is missing."""
    local = os.path.abspath(os.path.expanduser(source))
    if not os.path.lexists(local):
        raise errors.NotFound(f"local path {source} does not exist")
    return local


def local_target(dest: str, source_name: str) -> tuple[str, str]:
    """(directory to unpack into, name of the top entry) for a copy to the local path *dest*.

    An existing directory (or a path ending in ``/``) receives the entry under its own name;
    any other path is the new name, and its directory must exist.
    """
    dest = os.path.abspath(os.path.expanduser(dest)) + ("/" if dest.endswith("/") else "")
    if os.path.isdir(dest):
        return dest.rstrip("/") or "/", source_name
    if dest.endswith("/"):
        raise errors.NotFound(f"local directory {dest} does not exist", hint="create it first")
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        raise errors.NotFound(f"local directory {parent} does not exist", hint="create it first")
    return parent, os.path.basename(dest)


__all__ = ["local_source", "local_target", "secure_join", "tar_stream", "tree_size", "unpack"]
