"""Host-side parts of `%ctr cp`: paths resolved inside a root, tar streams made and unpacked."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest

from ctr_magic import errors
from ctr_magic.copying import local_target, secure_join, tar_stream, unpack
from ctr_magic.notebook.magics.cmd_files import split_target


def test_secure_join_resolves_links_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "abs").symlink_to("/etc")
    (root / "up").symlink_to("../../../..")
    (root / "etc" / "rel").symlink_to("../etc")
    assert secure_join(str(root), "/abs/passwd") == str(root / "etc" / "passwd")
    assert secure_join(str(root), "/up/etc") == str(root / "etc")
    assert secure_join(str(root), "../../etc/rel/rel/x") == str(root / "etc" / "x")
    assert secure_join(str(root), "/") == str(root)


def test_secure_join_stops_a_link_loop(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(errors.InvalidArgument, match="symbolic links"):
        secure_join(str(tmp_path), "/a/x")


def test_a_tree_round_trips_with_modes_and_links(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "x").write_bytes(os.urandom(3 << 20))
    (src / "d" / "x").chmod(0o640)
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "link").symlink_to("d/x")
    seen: list[tuple[int, int]] = []
    dest = tmp_path / "dest"
    dest.mkdir()
    moved = unpack(tar_stream(str(src), "copy"), str(dest), progress=lambda done, total: seen.append((done, total)))
    assert moved > 3 << 20 and seen[-1][0] == moved
    copy = dest / "copy"
    assert (copy / "d" / "x").read_bytes() == (src / "d" / "x").read_bytes()
    assert stat.S_IMODE((copy / "d" / "x").stat().st_mode) == 0o640
    assert stat.S_IMODE((copy / "run.sh").stat().st_mode) == 0o755
    assert os.readlink(copy / "link") == "d/x"


def test_unpack_renames_the_top_entry(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("1")
    unpack(tar_stream(str(tmp_path / "one.txt"), "one.txt"), str(tmp_path), rename_top="two.txt")
    assert (tmp_path / "two.txt").read_text() == "1"


def test_unpack_refuses_what_would_land_outside(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 0
        tar.addfile(info)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(errors.InvalidArgument, match="refused"):
        unpack([evil.read_bytes()], str(dest))
    assert not (tmp_path / "outside.txt").exists()


def test_missing_paths_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="does not exist"):
        list(tar_stream(str(tmp_path / "nope"), "nope"))
    with pytest.raises(errors.NotFound, match="does not exist"):
        local_target(str(tmp_path / "no" / "such" / "file"), "x")
    assert local_target(str(tmp_path), "x") == (str(tmp_path), "x")
    assert local_target(str(tmp_path / "new"), "x") == (str(tmp_path), "new")


def test_split_target_tells_container_paths_from_local_ones() -> None:
    assert split_target("box:/data") == ("box", "/data")
    assert split_target("box:") == ("box", "/")
    assert split_target("./box:x") == ("", "./box:x")
    assert split_target("/abs/path") == ("", "/abs/path")
    assert split_target("data") == ("", "data")
