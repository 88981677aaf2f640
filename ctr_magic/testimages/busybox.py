"""Busybox test images, built offline from the host's static busybox into an OCI layout.

Presets: one layer, many layers, a configured image, a multi-platform index, and large layers of
reproducible random bytes (for benchmarks).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
from collections.abc import Sequence
from pathlib import Path

from .. import errors
from ..layertree import Dir, Entry, File, StreamFile, Symlink
from ..ocilayout import DEFAULT_PATH, BuiltImage, ImageConfig, Layer, OCILayout
from ..platforms import parse_platform

#: Applets linked into /bin of every busybox image.
BUSYBOX_APPLETS: tuple[str, ...] = (
    "[", "awk", "basename", "cat", "chmod", "chown", "cp", "cut", "date", "dd", "df", "dirname",
    "du", "echo", "env", "false", "find", "grep", "gzip", "head", "hostname", "httpd", "id",
    "ifconfig", "ip", "kill", "ln", "ls", "md5sum", "mkdir", "mktemp", "mount", "mv", "nc",
    "nproc", "od", "ping", "printf", "ps", "pwd", "readlink", "rm", "rmdir", "sed", "seq", "sh",
    "sha256sum", "sleep", "sort", "stat", "tail", "tar", "tee", "test", "timeout", "touch", "tr",
    "true", "umount", "uname", "uniq", "wc", "wget", "whoami", "xargs", "yes",
)  # fmt: skip

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "app:x:1000:1000:app:/home/app:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\napp:x:1000:\nnobody:x:65534:\n"

class _PseudoRandomReader(io.RawIOBase):
    """Reproducible incompressible bytes (SHAKE-256 in 1 MiB blocks); ``read`` only."""

    BLOCK = 1 << 20

    def __init__(self, seed: str, size: int) -> None:
        super().__init__()
        self._seed = seed
        self._size = size
        self._pos = 0
        self._block_no = -1
        self._block = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self._size - self._pos)
        done = 0
        while done < n:
            block_no, offset = divmod(self._pos, self.BLOCK)
            if block_no != self._block_no:
                self._block = hashlib.shake_256(f"{self._seed}:{block_no}".encode()).digest(self.BLOCK)
                self._block_no = block_no
            take = min(n - done, self.BLOCK - offset)
            b[done : done + take] = self._block[offset : offset + take]
            done += take
            self._pos += take
        return n


def random_stream_file(size: int, seed: str, mode: int = 0o644) -> StreamFile:
    """A ``StreamFile`` of ``size`` reproducible pseudo-random bytes."""
    return StreamFile(size=size, opener=lambda: _PseudoRandomReader(seed, size), mode=mode)  # type: ignore[arg-type,return-value]


# --------------------------------------------------------------------------- busybox


def _elf_is_static(path: Path) -> bool:
    """True when the ELF file has no PT_INTERP program header (no dynamic loader needed)."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF":
            return False
        is64 = ident[4] == 2
        end = "<" if ident[5] == 1 else ">"
        if is64:
            f.seek(32)
            (phoff,) = struct.unpack(end + "Q", f.read(8))
            f.seek(54)
        else:
            f.seek(28)
            (phoff,) = struct.unpack(end + "I", f.read(4))
            f.seek(42)
        phentsize, phnum = struct.unpack(end + "HH", f.read(4))
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            (p_type,) = struct.unpack(end + "I", f.read(4))
            if p_type == 3:  # PT_INTERP
                return False
    return True


def busybox_path() -> Path:
    """The host's static busybox; raises ``Unavailable`` naming ``busybox-static`` otherwise."""
    found = shutil.which("busybox") or next(
        (p for p in ("/bin/busybox", "/usr/bin/busybox") if os.access(p, os.X_OK)), None
    )
    hint = "install the Debian package busybox-static (apt-get install -y busybox-static)"
    if not found:
        raise errors.Unavailable("busybox not found", hint=hint)
    path = Path(found).resolve()
    if not _elf_is_static(path):
        raise errors.Unavailable(f"{path} is dynamically linked and cannot run inside an image", hint=hint)
    return path


def busybox_rootfs(applets: Sequence[str] = BUSYBOX_APPLETS) -> dict[str, Entry | bytes | str]:
    """The file tree of a minimal busybox root filesystem (users root, app 1000, nobody)."""
    bb = busybox_path()
    size = bb.stat().st_size
    tree: dict[str, Entry | bytes | str] = {
        "bin": Dir(),
        "bin/busybox": StreamFile(size=size, opener=lambda: open(bb, "rb"), mode=0o755),  # noqa: SIM115
        "dev": Dir(),
        "etc": Dir(),
        "etc/passwd": File(PASSWD.encode()),
        "etc/group": File(GROUP.encode()),
        "home": Dir(),
        "home/app": Dir(mode=0o755, uid=1000, gid=1000),
        "proc": Dir(),
        "root": Dir(mode=0o700),
        "sbin": Dir(),
        "sys": Dir(),
        "tmp": Dir(mode=0o1777),
        "usr": Dir(),
        "usr/bin": Dir(),
        "usr/bin/env": Symlink("../../bin/busybox"),
        "var": Dir(),
        "var/tmp": Dir(mode=0o1777),
    }
    for applet in applets:
        if applet != "busybox":
            tree[f"bin/{applet}"] = Symlink("busybox")
    return tree


def _layout(layout: OCILayout | str | os.PathLike[str]) -> OCILayout:
    return layout if isinstance(layout, OCILayout) else OCILayout(layout)


def busybox_layer(layout: OCILayout) -> Layer:
    """The busybox base layer, built once per layout object."""
    if "busybox" not in layout.layers:
        layout.layers["busybox"] = layout.add_layer(busybox_rootfs(), created_by="ctr-magic: busybox rootfs")
    return layout.layers["busybox"]


def busybox_single_layer(layout: OCILayout | str | os.PathLike[str], tag: str = "latest") -> BuiltImage:
    """One busybox layer, default config (``Cmd ["/bin/sh"]``)."""
    lay = _layout(layout)
    return lay.tag(lay.add_image([busybox_layer(lay)], ImageConfig()), tag)


def busybox_multi_layer(layout: OCILayout | str | os.PathLike[str], n: int = 5, tag: str | None = None) -> BuiltImage:
    """``n`` layers: busybox, then layers 1..n-1 each adding ``/layer-<i>.txt`` ("layer <i>")."""
    if n < 1:
        raise errors.InvalidArgument(f"an image needs at least one layer, got n={n}")
    lay = _layout(layout)
    layers = [busybox_layer(lay)]
    for i in range(1, n):
        layers.append(lay.add_layer({f"layer-{i}.txt": f"layer {i}\n"}, created_by=f"ctr-magic: layer {i}"))
    return lay.tag(lay.add_image(layers, ImageConfig()), tag or str(n))


def busybox_with_config(layout: OCILayout | str | os.PathLike[str], tag: str = "latest") -> BuiltImage:
    """Busybox with Env FOO=bar, WorkingDir /work, User app and ``sh -c "echo hello from config"``."""
    lay = _layout(layout)
    work = lay.add_layer({"work": Dir(mode=0o755, uid=1000, gid=1000)}, created_by="ctr-magic: /work")
    config = ImageConfig(
        env=[DEFAULT_PATH, "FOO=bar"],
        entrypoint=["/bin/sh", "-c"],
        cmd=["echo hello from config"],
        working_dir="/work",
        user="app",
        labels={"org.opencontainers.image.title": "ctr-magic config test image"},
    )
    return lay.tag(lay.add_image([busybox_layer(lay), work], config), tag)


def multi_platform_index(
    layout: OCILayout | str | os.PathLike[str],
    tag: str = "latest",
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64/v8"),
) -> BuiltImage:
    """An image index with one manifest per platform.

    Every manifest reuses the host busybox layer (so only the host's entry really runs) plus a
    layer with ``/platform.txt`` holding the architecture, and a ``platform=<arch>`` label.
    """
    lay = _layout(layout)
    manifests = []
    for spec in platforms:
        plat = parse_platform(spec).to_oci()
        arch = plat["architecture"]
        extra = lay.add_layer({"platform.txt": f"{arch}\n"}, created_by=f"ctr-magic: platform {arch}")
        config = ImageConfig(labels={"platform": arch})
        manifests.append(lay.add_image([busybox_layer(lay), extra], config, platform=plat))
    return lay.tag(lay.add_index(manifests), tag)


def large_random_image(
    layout: OCILayout | str | os.PathLike[str],
    layers: int = 4,
    size_mib: int = 64,
    *,
    seed: int = 0,
    tag: str = "latest",
    compresslevel: int = 1,
) -> BuiltImage:
    """Busybox plus ``layers`` layers of ``size_mib`` MiB incompressible, reproducible data each.

    Data is streamed, so memory stays small whatever the size.
    """
    if layers < 1 or size_mib < 0:
        raise errors.InvalidArgument(f"invalid large image shape: layers={layers} size_mib={size_mib}")
    lay = _layout(layout)
    built = [busybox_layer(lay)]
    for i in range(layers):
        tree = {f"data/random-{i}.bin": random_stream_file(size_mib << 20, seed=f"{seed}:{i}")}
        built.append(
            lay.add_layer(tree, created_by=f"ctr-magic: random {size_mib} MiB #{i}", compresslevel=compresslevel)
        )
    return lay.tag(lay.add_image(built, ImageConfig(labels={"ctr-magic.seed": str(seed)})), tag)


__all__ = [
    "BUSYBOX_APPLETS",
    "busybox_layer",
    "busybox_multi_layer",
    "busybox_path",
    "busybox_rootfs",
    "busybox_single_layer",
    "busybox_with_config",
    "large_random_image",
    "multi_platform_index",
    "random_stream_file",
]
