"""COPY and ADD on host directories, with Docker's rules: a directory source copies its contents,
a file lands in a directory destination under its own name, several sources need a directory
destination ending in ``/``, missing parents are made (root, 0755), files keep their modes and
times, and everything copied belongs to root or to ``--chown`` (names looked up in the image's own
/etc/passwd and /etc/group). ADD unpacks a local tar archive into the destination.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from .. import errors
from ..containerd.spec import DirRootfs, parse_group, parse_passwd


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


ROOT = Owner(0, 0)


def resolve_chown(spec: str, rootfs: DirRootfs) -> Owner:
    """``--chown=user[:group]`` with names from the destination image (the group defaults to the user)."""
    if not spec:
        return ROOT
    user, _, group = spec.partition(":")
    group = group or user

    def lookup(name: str, entries: list, file: str) -> int:
        if name.isdigit():
            return int(name)
        for entry in entries:
            if entry.name == name:
                return int(entry.uid if hasattr(entry, "uid") else entry.gid)
        raise errors.InvalidArgument(f"--chown={spec}: no {name!r} in the image's {file}",
                                     hint="use a name the image knows, or numeric ids")

    uid = lookup(user, parse_passwd(rootfs.read("/etc/passwd")), "/etc/passwd")
    gid = lookup(group, parse_group(rootfs.read("/etc/group")), "/etc/group")
    return Owner(uid, gid)


def make_dirs(rootfs: DirRootfs, path: str, owner: Optional[Owner] = None) -> str:
    """Make *path* (inside the root) and missing parents, 0755, owned by *owner* (root by default);
    returns its host path."""
    owner = owner or ROOT
    parts = [p for p in path.split("/") if p]
    current = ""
    for part in parts:
        current = f"{current}/{part}"
        host = rootfs.resolve(current)
        if not os.path.lexists(host):
            os.mkdir(host, 0o755)
            os.chmod(host, 0o755)
            os.lchown(host, owner.uid, owner.gid)
    return rootfs.resolve(path or "/")


def _chmod_bits(text: str) -> Optional[int]:
    if not text:
        return None
    try:
        return int(text, 8)
    except ValueError:
        raise errors.InvalidArgument(f"--chmod={text} is not an octal mode", hint="e.g. --chmod=755") from None


def _inside_keeping_modes(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """The ``tar`` extraction filter's path checks (nothing lands outside the root filesystem), but the
    archive's modes kept as they are, as Docker's ADD keeps them."""
    checked = tarfile.tar_filter(member, dest)
    return checked.replace(mode=member.mode, deep=False)


class Copier:
    """Copies into a root filesystem mounted at *root* (see module docstring)."""

    def __init__(self, root: str, owner: Owner, chmod: str = "",
                 skip: Optional[Callable[[str], bool]] = None) -> None:
        self.skip = skip  # host paths of sources left out (the context's .dockerignore)
        self.rootfs = DirRootfs(root)
        self.owner = owner
        self.mode = _chmod_bits(chmod)

    def _finish(self, host: str, st: os.stat_result) -> None:
        os.lchown(host, self.owner.uid, self.owner.gid)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(host, self.mode if self.mode is not None else stat.S_IMODE(st.st_mode))
            os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def _copy_entry(self, src: str, dst: str) -> None:
        st = os.lstat(src)
        if stat.S_ISDIR(st.st_mode):
            if not os.path.isdir(dst):
                if os.path.lexists(dst):
                    os.remove(dst)
                os.mkdir(dst)
            self._copy_tree(src, dst)
        elif stat.S_ISLNK(st.st_mode):
            if os.path.lexists(dst):
                os.remove(dst)
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISREG(st.st_mode):
            if os.path.islink(dst) or os.path.isdir(dst):
                shutil.rmtree(dst) if os.path.isdir(dst) and not os.path.islink(dst) else os.remove(dst)
            shutil.copyfile(src, dst)
        else:
            raise errors.InvalidArgument(f"COPY: {src} is neither a file, a directory nor a symlink")
        self._finish(dst, st)

    def _copy_tree(self, src: str, dst: str) -> None:
        with os.scandir(src) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if self.skip is not None and self.skip(entry.path):
                    continue
                self._copy_entry(entry.path, os.path.join(dst, entry.name))

    def copy(self, sources: list[str], dest: str, *, add: bool = False) -> None:
        """Copy host paths *sources* to *dest* (a path inside the root; ``/`` at the end: a directory).

        """
        as_dir = dest.endswith("/")
        if len(sources) > 1 and not as_dir:
            raise errors.InvalidArgument(f"COPY of {len(sources)} sources: the destination {dest!r} must be a "
                                         "directory ending in /", hint=f"write {dest}/")
        for src in sources:
            st = os.stat(src) if os.path.isdir(src) else os.lstat(src)
            if stat.S_ISDIR(st.st_mode):
                target = self.rootfs.resolve(dest)
                existed = os.path.isdir(target)
                target = make_dirs(self.rootfs, dest.rstrip("/"))
                self._copy_tree(src, target)
                if not existed:
                    os.lchown(target, self.owner.uid, self.owner.gid)
                continue
            if add and tarfile.is_tarfile(src):
                self._extract(src, dest)
                continue
            into_dir = as_dir or os.path.isdir(self.rootfs.resolve(dest))
            path = f"{dest.rstrip('/')}/{os.path.basename(src)}" if into_dir else dest
            parent = os.path.dirname(path.rstrip("/")) or "/"
            make_dirs(self.rootfs, parent, self.owner)  # Docker: a file's new parents get its owner
            self._copy_entry(src, os.path.join(self.rootfs.resolve(parent), os.path.basename(path)))

    def _extract(self, archive: str, dest: str) -> None:
        target = make_dirs(self.rootfs, dest.rstrip("/"))
        with tarfile.open(archive) as tar:
            tar.extractall(target, numeric_owner=True, filter=_inside_keeping_modes)
        if self.owner != ROOT:
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    os.lchown(os.path.join(target, member.name), self.owner.uid, self.owner.gid)


__all__ = ["ROOT", "Copier", "Owner", "resolve_chown"]
