"""The Debian image builder's offline parts: mirror discovery, cache keys, rootfs -> layer tree."""

from __future__ import annotations

import os
from pathlib import Path

from ctr_magic.debian_image import FALLBACK_MIRROR, cache_key, debian_mirror, rootfs_tree
from ctr_magic.ocilayout import Dir, OCILayout, StreamFile, Symlink


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "# a comment\nTypes: deb deb-src\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    (tmp_path / "sources.list.d" / "other.list.disabled").write_text("deb http://wrong.example/ bookworm main\n")
    assert debian_mirror("bookworm", str(tmp_path)) == "http://mirror.example/debian"


def test_mirror_from_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/ bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n"
    )
    assert debian_mirror("bookworm", str(tmp_path)) == "http://one.example/debian"
    assert debian_mirror("trixie", str(tmp_path)) == FALLBACK_MIRROR
    assert debian_mirror("bookworm", str(tmp_path / "missing")) == FALLBACK_MIRROR


def test_cache_key_follows_the_recipe() -> None:
    base = cache_key("bookworm", ["python3-pandas"], "amd64")
    assert base == cache_key("bookworm", ["python3-pandas"], "amd64")
    assert base == cache_key("bookworm", ("python3-pandas",), "amd64")
    assert base != cache_key("bookworm", ["python3-pandas", "python3-scipy"], "amd64")
    assert base != cache_key("trixie", ["python3-pandas"], "amd64")
    assert base != cache_key("bookworm", ["python3-pandas"], "arm64")
    assert cache_key("b", ["x", "y"], "a") == cache_key("b", ["y", "x"], "a")


def test_rootfs_tree_keeps_modes_links_and_skips_special_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    tool = root / "usr" / "bin" / "tool"
    tool.write_bytes(b"#!/bin/sh\necho hi\n")
    tool.chmod(0o4755)
    os.link(tool, root / "usr" / "bin" / "tool-again")
    (root / "bin").symlink_to("usr/bin")
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)
    os.mkfifo(root / "tmp" / "pipe")
    tree = rootfs_tree(root)
    assert tree["bin"] == Symlink("usr/bin")
    assert isinstance(tree["tmp"], Dir) and tree["tmp"].mode == 0o1777
    assert "tmp/pipe" not in tree
    entry = tree["usr/bin/tool"]
    assert isinstance(entry, StreamFile) and entry.mode == 0o4755 and entry.size == 18
    assert isinstance(tree["usr/bin/tool-again"], StreamFile)
    layer = OCILayout(tmp_path / "layout").add_layer(tree)
    assert layer.diff_id.startswith("sha256:") and layer.descriptor.size > 0
    again = OCILayout(tmp_path / "layout2").add_layer(rootfs_tree(root))
    assert again.diff_id == layer.diff_id  # same files, same layer: the cache can trust its key
