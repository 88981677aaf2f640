"""A step's layer read straight from the overlay snapshot's upper directory.

The Diff service (``walking`` differ) compares the whole parent tree with the whole new tree, so a
one-file step on a Debian base walks tens of thousands of files twice. On the overlay snapshotter
the upper directory already *is* the change; Docker's overlay2 driver tars it directly, and so does
this module: files as they are, overlay whiteouts (0/0 character devices) as ``.wh.<name>``, opaque
directories as ``.wh..wh..opq``, hard links inside the layer as links. The tar goes to a temporary
file (hashed on the way), then into the content store under the build's lease.

Used only where it is exact: the overlay snapshotter, with the kernel's ``redirect_dir`` and
``metacopy`` features off (with them, the upper directory does not hold whole files and
directories); everywhere else the Diff service writes the layer (:func:`..containerd.commit.diff_layer`).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO, Optional

from .. import errors
from ..constants import MEDIA_OCI_LAYER
from ..containerd.ingest import ingest
from ..registry.manifests import Descriptor
from ..types import MountInfo

_OPAQUE_XATTR = "trusted.overlay.opaque"
_OVERLAY_XATTRS = ("trusted.overlay.",)
_PAX_XATTR = "SCHILY.xattr."
_CHUNK = 1 << 20
_KERNEL_FEATURES = ("/sys/module/overlay/parameters/redirect_dir", "/sys/module/overlay/parameters/metacopy")


def upper_dir(mounts: list[MountInfo]) -> str:
    """The upper directory of an overlay active snapshot, when this module can diff it ("" if not)."""
    if len(mounts) != 1 or mounts[0].type != "overlay":
        return ""
    for path in _KERNEL_FEATURES:
        try:
            with open(path) as fh:
                if fh.read().strip().upper() in ("Y", "ON", "1"):
                    return ""
        except OSError:
            continue
    for option in mounts[0].options:
        if option.startswith("upperdir="):
            return option.split("=", 1)[1]
    return ""


class _HashingFile:
    """Writes to a file and digests what passes."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def tell(self) -> int:
        return self.size


def _info(path: str, name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = st.st_mtime
    info.pax_headers = _xattrs(path)
    return info


def _xattrs(path: str) -> dict[str, str]:
    """Extended attributes as PAX records (file capabilities, ...), overlay's own left out."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    records = {}
    for name in names:
        if name.startswith(_OVERLAY_XATTRS):
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        records[f"{_PAX_XATTR}{name}"] = value.decode("utf-8", "surrogateescape")
    return records


def _entries(upper: str) -> Iterator[tuple[str, str]]:
    """(host path, name in the layer) of everything in *upper*, parents first, names sorted."""
    stack = [("", upper)]
    while stack:
        rel, directory = stack.pop()
        with os.scandir(directory) as it:
            names = sorted(entry.name for entry in it)
        children = []
        for name in names:
            path = os.path.join(directory, name)
            child = f"{rel}/{name}" if rel else name
            yield path, child
            if os.path.isdir(path) and not os.path.islink(path):
                children.append((child, path))
        stack.extend(reversed(children))


def write_upper_tar(upper: str, out: Any) -> None:
    """The layer tar of overlay upper directory *upper* (see module docstring)."""
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, name in _entries(upper):
            st = os.lstat(path)
            mode = st.st_mode
            if stat.S_ISCHR(mode) and st.st_rdev == 0:
                parent, _, base = name.rpartition("/")
                whiteout = _info(path, f"{parent}/.wh.{base}" if parent else f".wh.{base}", st)
                whiteout.mode = 0
                whiteout.pax_headers = {}
                tar.addfile(whiteout)
                continue
            info = _info(path, name, st)
            if stat.S_ISDIR(mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                if _opaque(path):
                    marker = _info(path, f"{name}/.wh..wh..opq", st)
                    marker.pax_headers = {}
                    tar.addfile(marker)
            elif stat.S_ISLNK(mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif stat.S_ISREG(mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    info.type = tarfile.LNKTYPE
                    info.linkname = links[key]
                    tar.addfile(info)
                    continue
                links[key] = name
                info.size = st.st_size
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            elif stat.S_ISFIFO(mode):
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                tar.addfile(info)
            # sockets are left out, as Docker does


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def upper_layer(service: Any, upper: str, *, lease: str, ref: str) -> tuple[Descriptor, str]:
    """Write the upper directory's layer into the content store: (descriptor, diff_id)."""
    with tempfile.TemporaryFile(prefix="ctr-magic-layer-") as fh:
        hashing = _HashingFile(fh)
        write_upper_tar(upper, hashing)
        digest, size = "sha256:" + hashing.sha.hexdigest(), hashing.size

        def source(offset: int) -> Iterator[bytes]:
            fh.seek(offset)
            while chunk := fh.read(_CHUNK):
                yield chunk

        try:
            ingest(service.client, ref, digest, size, source, lease=lease)
        except errors.CtrError as exc:
            raise errors.CtrError(f"writing the layer of {ref}: {exc.message}", hint=exc.hint) from None
    return Descriptor(media_type=MEDIA_OCI_LAYER, digest=digest, size=size), digest


def maybe_upper_layer(service: Any, mounts: list[MountInfo], *, lease: str,
                      ref: str) -> Optional[tuple[Descriptor, str]]:
    """:func:`upper_layer` where it is exact (see module docstring); None where the Diff service must do it."""
    upper = upper_dir(mounts)
    if not upper:
        return None
    return upper_layer(service, upper, lease=lease, ref=ref)


__all__ = ["maybe_upper_layer", "upper_dir", "upper_layer", "write_upper_tar"]
