"""Build small OCI images offline, from the host's static busybox.

The builder writes OCI image layouts (``oci-layout``, ``index.json``, ``blobs/sha256/...``)
that ``skopeo copy oci:<dir>:<tag> docker://...`` can push to the private registry.

Everything is deterministic: tar entries are sorted, mtime 0, uid/gid as given (root by
default), gzip headers carry no name and mtime 0, and JSON is written with sorted keys.
The same inputs (and the same zlib) always give the same digests.

Layers are streamed to disk while being hashed, so large layers never sit in memory.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import platform as _platform
import posixpath
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

from ctr_magic import errors
from ctr_magic.constants import (
    INDEX_MEDIA_TYPES,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_DOCKER_MANIFEST_LIST,
    MEDIA_OCI_CONFIG,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_MANIFEST,
)

log = logging.getLogger(__name__)

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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

_GOARCH = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}


# --------------------------------------------------------------------------- file trees


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


def _entries(tree: Tree) -> list[tuple[str, Entry]]:
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


# --------------------------------------------------------------------------- descriptors


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, str] | None = None
    annotations: dict[str, str] | None = None

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            d["platform"] = dict(self.platform)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Descriptor:
        return cls(
            media_type=str(d["mediaType"]),
            digest=str(d["digest"]),
            size=int(d["size"]),  # type: ignore[call-overload]
            platform=dict(d["platform"]) if d.get("platform") else None,  # type: ignore[call-overload]
            annotations=dict(d["annotations"]) if d.get("annotations") else None,  # type: ignore[call-overload]
        )


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor
    diff_id: str
    created_by: str = ""

    @property
    def digest(self) -> str:
        return self.descriptor.digest


@dataclass
class ImageConfig:
    """The runtime part of an OCI image config."""

    env: list[str] = field(default_factory=lambda: [DEFAULT_PATH])
    entrypoint: list[str] | None = None
    cmd: list[str] | None = field(default_factory=lambda: ["/bin/sh"])
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    stop_signal: str = ""

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"Env": list(self.env)}
        if self.entrypoint is not None:
            d["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            d["Cmd"] = list(self.cmd)
        if self.working_dir:
            d["WorkingDir"] = self.working_dir
        if self.user:
            d["User"] = self.user
        if self.labels:
            d["Labels"] = dict(self.labels)
        if self.exposed_ports:
            d["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.stop_signal:
            d["StopSignal"] = self.stop_signal
        return d


@dataclass(frozen=True)
class BuiltImage:
    """An image (manifest or index) stored under ``tag`` in an OCI layout."""

    layout: Path
    tag: str
    descriptor: Descriptor

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    @property
    def is_index(self) -> bool:
        return self.descriptor.media_type in INDEX_MEDIA_TYPES

    @property
    def oci_ref(self) -> str:
        """The skopeo source reference, ``oci:<dir>:<tag>``."""
        return f"oci:{self.layout}:{self.tag}"


def host_platform() -> dict[str, str]:
    """The OCI platform of this machine, e.g. ``{"architecture": "amd64", "os": "linux"}``."""
    machine = _platform.machine().lower()
    arch, variant = _GOARCH.get(machine, (machine, None))
    plat = {"architecture": arch, "os": "linux"}
    if variant:
        plat["variant"] = variant
    return plat


def parse_platform(spec: str) -> dict[str, str]:
    """``"linux/arm64/v8"`` -> ``{"os": "linux", "architecture": "arm64", "variant": "v8"}``."""
    parts = spec.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise errors.InvalidArgument(f"invalid platform {spec!r}", hint="use os/arch[/variant]")
    plat = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        plat["variant"] = parts[2]
    elif parts[1] == "arm64":
        plat["variant"] = "v8"
    return plat


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _index_bytes(manifests: Sequence[Descriptor]) -> bytes:
    """An OCI image index over *manifests* (an index blob, or a layout's index.json)."""
    doc = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [m.to_dict() for m in manifests]}
    return _json_bytes(doc)


# --------------------------------------------------------------------------- streaming


class _HashingWriter(io.RawIOBase):
    """Write-through to ``sink`` while counting bytes and hashing them."""

    def __init__(self, sink: BinaryIO | io.RawIOBase | gzip.GzipFile) -> None:
        super().__init__()
        self._sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.sha.update(b)
        self.size += len(b)
        self._sink.write(b)
        return len(b)

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


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


# --------------------------------------------------------------------------- layout


class OCILayout:
    """An OCI image layout directory (created if missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        self.blobs = self.path / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        marker = self.path / "oci-layout"
        if not marker.exists():
            marker.write_bytes(_json_bytes({"imageLayoutVersion": "1.0.0"}))
        if not (self.path / "index.json").exists():
            self._write_index_json([])
        self._memo: dict[str, Layer] = {}

    # ---- blobs

    def blob_path(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or len(hexd) != 64:
            raise errors.InvalidArgument(f"unsupported digest {digest!r}")
        return self.blobs / hexd

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def read_json(self, digest: str) -> dict[str, object]:
        return json.loads(self.read_blob(digest))

    def write_blob(self, data: bytes, media_type: str) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        target = self.blob_path(digest)
        if not target.exists():
            with self._temp_blob() as (f, tmp):
                f.write(data)
                f.close()
                os.replace(tmp, target)
        return Descriptor(media_type=media_type, digest=digest, size=len(data))

    @contextlib.contextmanager
    def _temp_blob(self) -> Iterator[tuple[BinaryIO, str]]:
        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".tmp-")
        os.fchmod(fd, 0o644)
        f = os.fdopen(fd, "wb")
        try:
            yield f, tmp
        finally:
            f.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def add_layer(self, tree: Tree, *, created_by: str = "", compresslevel: int = 6) -> Layer:
        """Write ``tree`` as a gzip tar layer blob; returns its descriptor and diff_id."""
        t0 = time.monotonic()
        with self._temp_blob() as (f, tmp):
            compressed = _HashingWriter(f)
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=compresslevel, mtime=0)
            uncompressed = _HashingWriter(gz)
            tar = tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT, copybufsize=1 << 20)  # type: ignore[call-overload]
            for path, entry in _entries(tree):
                _add_tar_entry(tar, path, entry)
            tar.close()
            gz.close()
            f.close()
            target = self.blob_path(compressed.digest)
            if not target.exists():  # else the same blob is there already; _temp_blob removes tmp
                os.replace(tmp, target)
        desc = Descriptor(MEDIA_OCI_LAYER_GZIP, compressed.digest, compressed.size)
        log.debug(
            "layer %s: %d bytes (%d uncompressed) in %.2fs",
            desc.digest[:19],
            desc.size,
            uncompressed.size,
            time.monotonic() - t0,
        )
        return Layer(descriptor=desc, diff_id=uncompressed.digest, created_by=created_by)

    def add_image(
        self,
        layers: Sequence[Layer],
        config: ImageConfig | None = None,
        *,
        platform: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """Write config and manifest blobs; returns the manifest descriptor (with platform)."""
        plat = dict(platform) if platform else host_platform()
        cfg = config or ImageConfig()
        config_doc: dict[str, object] = {
            "architecture": plat["architecture"],
            "os": plat["os"],
            "created": EPOCH,
            "config": cfg.to_dict(),
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [
                {"created": EPOCH, "created_by": layer.created_by or "ctr-magic imagebuild"} for layer in layers
            ],
        }
        if plat.get("variant"):
            config_doc["variant"] = plat["variant"]
        config_desc = self.write_blob(_json_bytes(config_doc), MEDIA_OCI_CONFIG)
        manifest: dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": config_desc.to_dict(),
            "layers": [layer.descriptor.to_dict() for layer in layers],
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        desc = self.write_blob(_json_bytes(manifest), MEDIA_OCI_MANIFEST)
        return Descriptor(desc.media_type, desc.digest, desc.size, platform=plat)

    def add_index(self, manifests: Sequence[Descriptor]) -> Descriptor:
        """Write an image index blob over ``manifests`` (each should carry a platform)."""
        return self.write_blob(_index_bytes(manifests), MEDIA_OCI_INDEX)

    # ---- index.json

    def _read_index_json(self) -> list[Descriptor]:
        doc = json.loads((self.path / "index.json").read_bytes())
        return [Descriptor.from_dict(m) for m in doc.get("manifests", [])]

    def _write_index_json(self, manifests: list[Descriptor]) -> None:
        tmp = self.path / ".index.json.tmp"
        tmp.write_bytes(_index_bytes(manifests))
        os.replace(tmp, self.path / "index.json")

    def tag(self, descriptor: Descriptor, tag: str) -> BuiltImage:
        """Point ``tag`` (``org.opencontainers.image.ref.name``) at ``descriptor`` in index.json."""
        if not tag or ":" in tag or "/" in tag:
            raise errors.InvalidArgument(f"invalid layout tag {tag!r}")
        keep = [m for m in self._read_index_json() if (m.annotations or {}).get(ANNOTATION_REF_NAME) != tag]
        tagged = Descriptor(
            descriptor.media_type,
            descriptor.digest,
            descriptor.size,
            platform=None if descriptor.media_type in INDEX_MEDIA_TYPES else descriptor.platform,
            annotations={**(descriptor.annotations or {}), ANNOTATION_REF_NAME: tag},
        )
        keep.append(tagged)
        keep.sort(key=lambda m: (m.annotations or {}).get(ANNOTATION_REF_NAME, ""))
        self._write_index_json(keep)
        return BuiltImage(self.path, tag, tagged)

    def tags(self) -> dict[str, Descriptor]:
        return {
            (m.annotations or {})[ANNOTATION_REF_NAME]: m
            for m in self._read_index_json()
            if ANNOTATION_REF_NAME in (m.annotations or {})
        }

    def resolve(self, tag: str) -> Descriptor:
        try:
            return self.tags()[tag]
        except KeyError:
            raise errors.NotFound(f"tag {tag!r} not found in OCI layout {self.path}") from None


def _add_tar_entry(tar: tarfile.TarFile, path: str, entry: Entry) -> None:
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
        "bin/busybox": StreamFile(size=size, opener=lambda: open(bb, "rb"), mode=0o755),
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


def _busybox_layer(layout: OCILayout) -> Layer:
    """The busybox base layer, built once per layout object."""
    if "busybox" not in layout._memo:
        layout._memo["busybox"] = layout.add_layer(busybox_rootfs(), created_by="ctr-magic: busybox rootfs")
    return layout._memo["busybox"]


# --------------------------------------------------------------------------- presets


def busybox_single_layer(layout: OCILayout | str | os.PathLike[str], tag: str = "latest") -> BuiltImage:
    """One busybox layer, default config (``Cmd ["/bin/sh"]``)."""
    lay = _layout(layout)
    return lay.tag(lay.add_image([_busybox_layer(lay)], ImageConfig()), tag)


def busybox_multi_layer(layout: OCILayout | str | os.PathLike[str], n: int = 5, tag: str | None = None) -> BuiltImage:
    """``n`` layers: busybox, then layers 1..n-1 each adding ``/layer-<i>.txt`` ("layer <i>")."""
    if n < 1:
        raise errors.InvalidArgument(f"an image needs at least one layer, got n={n}")
    lay = _layout(layout)
    layers = [_busybox_layer(lay)]
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
    return lay.tag(lay.add_image([_busybox_layer(lay), work], config), tag)


def multi_platform_index(
    layout: OCILayout | str | os.PathLike[str],
    tag: str = "latest",
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
) -> BuiltImage:
    """An image index with one manifest per platform.

    Every manifest reuses the host busybox layer (so only the host's entry really runs) plus a
    layer with ``/platform.txt`` holding the architecture, and a ``platform=<arch>`` label.
    """
    lay = _layout(layout)
    manifests = []
    for spec in platforms:
        plat = parse_platform(spec)
        arch = plat["architecture"]
        extra = lay.add_layer({"platform.txt": f"{arch}\n"}, created_by=f"ctr-magic: platform {arch}")
        config = ImageConfig(labels={"platform": arch})
        manifests.append(lay.add_image([_busybox_layer(lay), extra], config, platform=plat))
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
    built = [_busybox_layer(lay)]
    for i in range(layers):
        tree = {f"data/random-{i}.bin": random_stream_file(size_mib << 20, seed=f"{seed}:{i}")}
        built.append(
            lay.add_layer(tree, created_by=f"ctr-magic: random {size_mib} MiB #{i}", compresslevel=compresslevel)
        )
    return lay.tag(lay.add_image(built, ImageConfig(labels={"ctr-magic.seed": str(seed)})), tag)


# --------------------------------------------------------------------------- publishing


def skopeo_path() -> str:
    from .env import find_binary  # lazily: the daemon module is not needed to build images

    return find_binary("skopeo")


_ACCEPT = ", ".join([MEDIA_OCI_MANIFEST, MEDIA_OCI_INDEX, MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_MANIFEST_LIST])


def registry_manifest_digest(registry_addr: str, repo: str, reference: str, *, timeout: float = 10.0) -> str | None:
    """Digest the (plain-HTTP) registry serves for ``repo:reference``, or None if unknown."""
    url = f"http://{registry_addr}/v2/{repo}/manifests/{reference}"
    req = urllib.request.Request(url, method="HEAD", headers={"Accept": _ACCEPT})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise errors.CtrError(f"registry {registry_addr}: HEAD {repo}:{reference} -> HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise errors.Unavailable(f"registry {registry_addr} unreachable: {exc}") from exc


def _run_skopeo(args: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    cmd = [skopeo_path(), "--insecure-policy", *args]
    log.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise errors.Unavailable(f"skopeo {args[0]} timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise errors.CtrError(f"skopeo {args[0]} failed: {msg[-1] if msg else proc.returncode}")
    return proc


def _expected_digest(layout: OCILayout, desc: Descriptor, all_platforms: bool) -> str:
    """The digest the registry will serve after the copy."""
    if desc.media_type not in INDEX_MEDIA_TYPES or all_platforms:
        return desc.digest
    host = host_platform()
    index = layout.read_json(desc.digest)
    for m in index.get("manifests", []):  # type: ignore[union-attr]
        plat = m.get("platform") or {}
        if plat.get("os") == host["os"] and plat.get("architecture") == host["architecture"]:
            return str(m["digest"])
    raise errors.NotFound(f"index {desc.digest} has no manifest for {host['os']}/{host['architecture']}")


def publish(
    layout_dir: str | os.PathLike[str],
    registry_addr: str,
    repo: str,
    tag: str,
    *,
    all_platforms: bool = False,
    src_tag: str | None = None,
    force: bool = False,
    timeout: float = 600.0,
) -> str:
    """Push ``oci:<layout_dir>:<src_tag or tag>`` to ``<registry_addr>/<repo>:<tag>`` (plain HTTP).

    Digests are preserved (``--preserve-digests``), so the registry serves exactly the layout's
    manifest (or index with ``all_platforms``). Skips the copy when the registry already has
    that digest under the tag, unless ``force``. Returns the pushed manifest/index digest.
    """
    layout_path = Path(layout_dir).absolute()
    if ":" in str(layout_path):
        raise errors.InvalidArgument(f"OCI layout path must not contain ':': {layout_path}")
    layout = OCILayout(layout_path)
    source_tag = src_tag or tag
    expected = _expected_digest(layout, layout.resolve(source_tag), all_platforms)
    dest = f"docker://{registry_addr}/{repo}:{tag}"
    if not force and registry_manifest_digest(registry_addr, repo, tag) == expected:
        log.info("%s already at %s, skipping push", dest, expected)
        return expected
    t0 = time.monotonic()
    args = ["copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests"]
    if all_platforms:
        args.append("--all")
    _run_skopeo([*args, f"oci:{layout_path}:{source_tag}", dest], timeout)
    raw = _run_skopeo(["inspect", "--tls-verify=false", "--raw", dest], timeout).stdout
    pushed = "sha256:" + hashlib.sha256(raw).hexdigest()
    if pushed != expected:
        raise errors.CtrError(f"pushed {dest} but the registry serves {pushed}, expected {expected}")
    log.info("pushed %s (%s) in %.2fs", dest, pushed, time.monotonic() - t0)
    return pushed


#: name -> (repository, tag) of the standard test images.
TEST_IMAGES: dict[str, tuple[str, str]] = {
    "busybox": ("ctr-magic/busybox", "latest"),
    "layers": ("ctr-magic/layers", "5"),
    "config": ("ctr-magic/config", "latest"),
    "multi": ("ctr-magic/multi", "latest"),
}


def build_test_images(layout: OCILayout | str | os.PathLike[str]) -> dict[str, BuiltImage]:
    """Build the standard test images into one layout; layout tags are the names."""
    lay = _layout(layout)
    return {
        "busybox": busybox_single_layer(lay, tag="busybox"),
        "layers": busybox_multi_layer(lay, 5, tag="layers"),
        "config": busybox_with_config(lay, tag="config"),
        "multi": multi_platform_index(lay, tag="multi"),
    }


def publish_test_images(registry_addr: str, *, work_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Build and push the standard test images; returns name -> ``<registry>/<repo>:<tag>``.

    Idempotent: images whose digest the registry already serves are not pushed again.
    """
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="ctr-magic-images-"))
        built = build_test_images(work_dir)
        refs: dict[str, str] = {}
        for name, image in built.items():
            repo, tag = TEST_IMAGES[name]
            publish(image.layout, registry_addr, repo, tag, src_tag=image.tag, all_platforms=image.is_index)
            refs[name] = f"{registry_addr}/{repo}:{tag}"
    log.info("test images ready on %s in %.2fs", registry_addr, time.monotonic() - t0)
    return refs


__all__ = [
    "BUSYBOX_APPLETS",
    "TEST_IMAGES",
    "BuiltImage",
    "Descriptor",
    "Dir",
    "File",
    "ImageConfig",
    "Layer",
    "OCILayout",
    "StreamFile",
    "Symlink",
    "Whiteout",
    "build_test_images",
    "busybox_multi_layer",
    "busybox_path",
    "busybox_rootfs",
    "busybox_single_layer",
    "busybox_with_config",
    "host_platform",
    "large_random_image",
    "multi_platform_index",
    "parse_platform",
    "publish",
    "publish_test_images",
    "random_stream_file",
    "registry_manifest_digest",
]
