"""Who a container's process runs as: the image's /etc/passwd and /etc/group, read through a
:class:`RootfsFiles` (a mounted root filesystem, a directory, or nothing), and ``user[:group]``
resolved to numeric ids with supplementary groups, as containerd's ``oci.WithUser`` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from .. import errors

# --------------------------------------------------------------------------- the image's files


class RootfsFiles(Protocol):
    """Read-only access to files of a container's root filesystem."""

    def read(self, path: str) -> Optional[bytes]:
        """The file's bytes, or None when it does not exist."""
        ...


class NoRootfs:
    """A root filesystem with no files (an image without /etc/passwd behaves like this)."""

    def read(self, path: str) -> Optional[bytes]:
        return None


class DirRootfs:
    """Files of a root filesystem visible as a host directory.

    Symlinks are followed *inside* the root (an absolute link target means the root, not the
    host's /), as containerd does with ``fs.RootPath``.
    """

    _MAX_LINKS = 40

    def __init__(self, root: str) -> None:
        self.root = root

    def resolve(self, path: str) -> str:
        """The host path of *path* inside the root, symlinks resolved within the root."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        resolved: list[str] = []
        links = 0
        while parts:
            name = parts.pop(0)
            if name == "..":
                if resolved:
                    resolved.pop()
                continue
            host = os.path.join(self.root, *resolved, name)
            if os.path.islink(host):
                links += 1
                if links > self._MAX_LINKS:
                    raise OSError(f"too many levels of symbolic links resolving {path}")
                target = os.readlink(host)
                if target.startswith("/"):
                    resolved = []
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            resolved.append(name)
        return os.path.join(self.root, *resolved)

    def read(self, path: str) -> Optional[bytes]:
        try:
            with open(self.resolve(path), "rb") as fh:
                return fh.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None


# --------------------------------------------------------------------------- users and groups


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str = ""


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class UserIds:
    """What the OCI spec's ``process.user`` holds."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()

    def to_oci(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uid": self.uid, "gid": self.gid}
        if self.additional_gids:
            out["additionalGids"] = list(self.additional_gids)
        return out


def _int_or_none(text: str) -> Optional[int]:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 0 else None


def _colon_records(data: Optional[bytes], min_fields: int) -> Iterator[list[str]]:
    """The fields of each line of a colon-separated file; comments and short lines are skipped."""
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields_ = line.split(":")
        if len(fields_) >= min_fields:
            yield fields_


def parse_passwd(data: Optional[bytes]) -> list[PasswdEntry]:
    """Entries of an /etc/passwd file; malformed lines are skipped, as libc does."""
    out = []
    for fields_ in _colon_records(data, 4):
        uid, gid = _int_or_none(fields_[2]), _int_or_none(fields_[3])
        if uid is None or gid is None:
            continue
        out.append(PasswdEntry(fields_[0], uid, gid, fields_[5] if len(fields_) > 5 else ""))
    return out


def parse_group(data: Optional[bytes]) -> list[GroupEntry]:
    """Entries of an /etc/group file; malformed lines are skipped."""
    out = []
    for fields_ in _colon_records(data, 3):
        gid = _int_or_none(fields_[2])
        if gid is None:
            continue
        members = tuple(m for m in (fields_[3].split(",") if len(fields_) > 3 else []) if m)
        out.append(GroupEntry(fields_[0], gid, members))
    return out


def resolve_user(user: str, rootfs: RootfsFiles) -> UserIds:
    """``user``, ``uid``, ``user:group``, ``uid:gid`` (and mixes) -> ids, as containerd's ``WithUser``.

    A name must exist in the image (else InvalidArgument naming it); a numeric uid missing from
    /etc/passwd runs with gid 0. Supplementary groups come from /etc/group for the user's name.
    """
    user = user.strip()
    if not user:
        return _with_supplementary(UserIds(0, 0), "root", rootfs)
    parts = user.split(":")
    if len(parts) > 2 or not all(parts):
        raise errors.InvalidArgument(f"invalid user {user!r}", hint="use name, uid, name:group or uid:gid")
    passwd = parse_passwd(rootfs.read("/etc/passwd"))
    user_part = parts[0]
    uid_num = _int_or_none(user_part)
    if uid_num is None:
        entry = next((e for e in passwd if e.name == user_part), None)
        if entry is None:
            raise errors.InvalidArgument(
                f"user {user_part!r} is not in the image's /etc/passwd",
                hint="use a numeric uid[:gid] or a user the image defines",
            )
        uid, gid, name = entry.uid, entry.gid, entry.name
    else:
        entry = next((e for e in passwd if e.uid == uid_num), None)
        uid = uid_num
        gid = entry.gid if entry is not None else 0
        name = entry.name if entry is not None else ""
    if len(parts) == 2:
        group_part = parts[1]
        gid_num = _int_or_none(group_part)
        if gid_num is not None:
            gid = gid_num
        else:
            group = next((g for g in parse_group(rootfs.read("/etc/group")) if g.name == group_part), None)
            if group is None:
                raise errors.InvalidArgument(
                    f"group {group_part!r} is not in the image's /etc/group",
                    hint="use a numeric gid or a group the image defines",
                )
            gid = group.gid
    return _with_supplementary(UserIds(uid, gid), name, rootfs)


def _with_supplementary(ids: UserIds, username: str, rootfs: RootfsFiles) -> UserIds:
    """Add the groups listing *username* as a member; the primary gid always comes first."""
    extra: list[int] = []
    if username:
        for group in parse_group(rootfs.read("/etc/group")):
            if group.name != username and username in group.members and group.gid not in extra:
                extra.append(group.gid)
    gids = [ids.gid] + [g for g in extra if g != ids.gid]
    return UserIds(ids.uid, ids.gid, tuple(gids))


__all__ = ["DirRootfs", "GroupEntry", "NoRootfs", "PasswdEntry", "RootfsFiles", "UserIds", "parse_group",
           "parse_passwd", "resolve_user"]
