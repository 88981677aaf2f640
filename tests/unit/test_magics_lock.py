"""ctr-lock.json: format, resolution to digests, merging, and clear errors for broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctr_magic.errors import InvalidArgument
from ctr_magic.notebook.lock import LockFile, lock_key, pinned, write_lock

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def test_write_and_resolve(tmp_path: Path) -> None:
    path = tmp_path / "ctr-lock.json"
    write_lock(path, {"busybox": D1, "127.0.0.1:5000/app:v1": D2})
    doc = json.loads(path.read_text())
    assert doc == {"version": 1, "images": {"127.0.0.1:5000/app:v1": D2, "docker.io/library/busybox:latest": D1}}
    lock = LockFile.load(path)
    assert lock is not None
    assert lock.resolve("busybox:latest") == (f"docker.io/library/busybox@{D1}", D1)
    assert lock.resolve("127.0.0.1:5000/app:v1") == (f"127.0.0.1:5000/app@{D2}", D2)
    assert lock.resolve("127.0.0.1:5000/app:v2") == ("127.0.0.1:5000/app:v2", None)
    # a ref that names a digest is never rewritten
    assert lock.resolve(f"busybox@{D2}") == (f"busybox@{D2}", None)


def test_merge_and_replace(tmp_path: Path) -> None:
    path = tmp_path / "ctr-lock.json"
    write_lock(path, {"a": D1})
    write_lock(path, {"b": D2})
    assert set(LockFile.load(path).images) == {lock_key("a"), lock_key("b")}  # type: ignore[union-attr]
    write_lock(path, {"b": D1}, merge=False)
    assert LockFile.load(path).images == {lock_key("b"): D1}  # type: ignore[union-attr]


def test_pinned_refs_are_not_written(tmp_path: Path) -> None:
    path = tmp_path / "ctr-lock.json"
    write_lock(path, {f"a@{D1}": D1, "b": D2})
    assert list(LockFile.load(path).images) == [lock_key("b")]  # type: ignore[union-attr]


def test_same_content_gives_the_same_bytes(tmp_path: Path) -> None:
    one, two = tmp_path / "1.json", tmp_path / "2.json"
    write_lock(one, {"a": D1, "b": D2})
    write_lock(two, {"b": D2, "a": D1})
    assert one.read_bytes() == two.read_bytes()


def test_missing_file_is_none(tmp_path: Path) -> None:
    assert LockFile.load(tmp_path / "none.json") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"version": 2, "images": {}}', "unknown format"),
        ('{"version": 1, "images": {"a": "latest"}}', "not a sha256 digest"),
        ('{"version": 1, "images": {"Bad Ref": "' + D1 + '"}}', "white space"),
    ],
)
def test_broken_files_are_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "ctr-lock.json"
    path.write_text(content)
    with pytest.raises(InvalidArgument) as info:
        LockFile.load(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_pinned() -> None:
    assert pinned("busybox", D1) == f"docker.io/library/busybox@{D1}"
