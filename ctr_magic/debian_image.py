"""A Debian image with python3 and pandas, built from Debian's own packages (no Docker Hub).

``ensure_debian_image(registry_addr)`` returns a reference in the local registry; the first call
runs ``debootstrap --variant=minbase --include=python3-pandas bookworm`` against the machine's
apt mirror, packs the root filesystem into an OCI layout (ctr_magic.ocilayout) and pushes it.
The layout is cached under ``$CTR_MAGIC_HOME/cache`` by a key of suite, packages and
architecture, so later calls (and later runs on a reused machine) only push it again, or do
nothing when the registry has it already.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import errors
from .layertree import Dir, Entry, StreamFile, Symlink
from .ocilayout import DEFAULT_PATH, ImageConfig, OCILayout
from .platforms import host_platform
from .testimages.publish import publish

log = logging.getLogger(__name__)

SUITE = "bookworm"
PACKAGES: tuple[str, ...] = ("python3-pandas",)
REPOSITORY = "ctr-magic/debian-pandas"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
#: Bump when the way the image is made changes, so old caches are not reused.
RECIPE_VERSION = 1
#: Removed from the root filesystem: caches, logs and apt lists that only make the image bigger.
PRUNE = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/cache/ldconfig/aux-cache",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
)
KEEP_EMPTY = ("var/cache/apt", "var/lib/apt/lists", "var/log")

Report = Callable[[str], None]


@dataclass(frozen=True)
class DebianImage:
    ref: str
    digest: str
    cache_dir: str
    built: bool
    seconds: float


def _home() -> Path:
    from .env import default_base_dir  # reads $CTR_MAGIC_HOME

    return default_base_dir()


def _source_entries(text: str, deb822: bool) -> Iterator[tuple[str, list[str]]]:
    """(uri, suites) of every ``deb`` source in a sources.list or deb822 .sources text."""
    if not deb822:
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            line = re.sub(r"\[[^\]]*\]", " ", line)
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb":
                yield parts[1], [parts[2]]
        return
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
            for uri in fields.get("uris", "").split():
                yield uri, fields.get("suites", "").split()


def debian_mirror(suite: str = SUITE, apt_dir: str = "/etc/apt") -> str:
    """The machine's mirror for ``suite`` (from sources.list and sources.list.d), else deb.debian.org."""
    files: list[Path] = [Path(apt_dir) / "sources.list"]
    parts = Path(apt_dir) / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri, suites in _source_entries(text, path.suffix == ".sources"):
            if suite in suites and uri.startswith(("http://", "https://", "file:/")):
                return uri.rstrip("/")
    return FALLBACK_MIRROR


def cache_key(suite: str, packages: Sequence[str], architecture: str) -> str:
    recipe = {"suite": suite, "packages": sorted(packages), "arch": architecture, "recipe": RECIPE_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another build of the same image waits here
        yield
    finally:
        os.close(fd)


def _debootstrap(target: Path, suite: str, packages: Sequence[str], mirror: str) -> None:
    from .env import find_binary

    binary = find_binary("debootstrap")
    if os.geteuid() != 0:
        raise errors.FailedPrecondition("building the Debian image needs root (debootstrap)")
    cmd = [binary, "--variant=minbase", f"--include={','.join(packages)}", suite, str(target), mirror]
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
        raise errors.CtrError(
            f"debootstrap {suite} failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}",
            hint=f"check that {mirror} is reachable",
        )


def _prune(root: Path) -> None:
    for rel in PRUNE:
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    for rel in KEEP_EMPTY:
        (root / rel).mkdir(parents=True, exist_ok=True)


def rootfs_tree(root: Path) -> dict[str, Entry]:
    """The directory as a layer tree (hard links become copies; device nodes are skipped:
    the runtime provides /dev)."""
    tree: dict[str, Entry] = {}
    skipped = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                tree[rel] = Symlink(os.readlink(full), uid=st.st_uid, gid=st.st_gid)
            elif stat.S_ISDIR(st.st_mode):
                tree[rel] = Dir(mode=mode, uid=st.st_uid, gid=st.st_gid)
            elif stat.S_ISREG(st.st_mode):
                tree[rel] = StreamFile(
                    size=st.st_size, opener=lambda p=full: open(p, "rb"), mode=mode,  # noqa: SIM115  (the layer writer closes it) uid=st.st_uid, gid=st.st_gid
                )
            else:
                skipped += 1
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    log.debug("%d special files skipped in %s", skipped, root)
    return tree


def build_layout(layout_dir: Path, *, suite: str = SUITE, packages: Sequence[str] = PACKAGES,
                 mirror: Optional[str] = None, report: Optional[Report] = None) -> str:
    """debootstrap + pack into an OCI layout tagged ``suite``; returns the manifest digest."""
    say = report or (lambda _msg: None)
    mirror = mirror or debian_mirror(suite)
    work = layout_dir.parent / "rootfs.tmp"
    if work.exists():
        shutil.rmtree(work)
    try:
        started = time.monotonic()
        say(f"debootstrap {suite} with {', '.join(packages)} from {mirror} (takes a few minutes, once)")
        _debootstrap(work, suite, packages, mirror)
        _prune(work)
        say(f"root filesystem ready in {time.monotonic() - started:.0f}s; packing it as an image layer")
        started = time.monotonic()
        if layout_dir.exists():
            shutil.rmtree(layout_dir)
        layout = OCILayout(layout_dir)
        layer = layout.add_layer(rootfs_tree(work), created_by=f"debootstrap --variant=minbase {suite}",
                                 compresslevel=3)
        config = ImageConfig(
            env=[DEFAULT_PATH, "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"],
            cmd=["python3"],
            labels={"org.opencontainers.image.title": f"Debian {suite} with {' '.join(packages)}",
                    "org.opencontainers.image.source": "ctr_magic.debian_image"},
        )  # fmt: skip
        built = layout.tag(layout.add_image([layer], config), suite)
        say(f"layer of {layer.descriptor.size >> 20} MiB packed in {time.monotonic() - started:.0f}s")
        return built.digest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_debian_image(
    registry_addr: str,
    *,
    suite: str = SUITE,
    packages: Sequence[str] = PACKAGES,
    repository: str = REPOSITORY,
    cache_root: Optional[str | os.PathLike[str]] = None,
    mirror: Optional[str] = None,
    report: Optional[Report] = None,
) -> DebianImage:
    """The Debian image in ``registry_addr`` (built and cached on first use); see the module doc."""
    started = time.monotonic()
    key = cache_key(suite, packages, host_platform().architecture)
    cache_dir = Path(cache_root) if cache_root is not None else _home() / "cache"
    entry = cache_dir / f"debian-{suite}-{key}"
    layout_dir = entry / "layout"
    done = entry / "done.json"
    built = False
    with _locked(entry / ".lock"):
        if not done.exists():
            digest = build_layout(layout_dir, suite=suite, packages=packages, mirror=mirror, report=report)
            done.write_text(json.dumps({"digest": digest, "suite": suite, "packages": list(packages)}) + "\n")
            built = True
        digest = json.loads(done.read_text())["digest"]
        pushed = publish(layout_dir, registry_addr, repository, suite)
    if pushed != digest:
        raise errors.CtrError(f"registry {registry_addr} serves {pushed} for {repository}:{suite}, expected {digest}")
    ref = f"{registry_addr}/{repository}:{suite}"
    seconds = time.monotonic() - started
    log.info("%s ready (%s) in %.1fs%s", ref, digest, seconds, " (built)" if built else "")
    return DebianImage(ref=ref, digest=digest, cache_dir=str(entry), built=built, seconds=seconds)


__all__ = ["PACKAGES", "REPOSITORY", "SUITE", "DebianImage", "build_layout", "cache_key", "debian_mirror",
           "ensure_debian_image", "rootfs_tree"]  # fmt: skip
