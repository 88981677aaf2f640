"""Conformance: tag, commit, import/export, push, kill, logs, labels, attached run and cp, same assertions
on containerd, Docker and the Apple stand-in; and images moving between backends."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import stat
from pathlib import Path

import pytest

from ctr_magic import errors, features
from ctr_magic.reference import normalize
from ctr_magic.types import (
    ContainerSpec,
    CreateContainerRequest,
    DeleteImageOptions,
    ExecTaskRequest,
    LayerProgress,
    StartTaskOptions,
)

from .conftest import RUN_ID, RUN_LABEL, Backend


def _drop_image(be: Backend, ref: str) -> None:
    with contextlib.suppress(errors.NotFound):
        be.service.delete_image(ref, DeleteImageOptions(synchronous=True))


def _exec_out(be: Backend, cid: str, *args: str) -> str:
    out = io.BytesIO()
    result = be.service.exec_task(cid, ExecTaskRequest(args=list(args), stdout=out, stderr=io.BytesIO()))
    assert result.exit_code == 0, out.getvalue()
    return out.getvalue().decode()


def test_tag_gives_the_image_a_second_name(be: Backend) -> None:
    ref = be.images["busybox"]
    be.service.pull_image(ref)
    registry = ref.split("/", 1)[0]
    new = f"{registry}/ctr-magic-test/tagged-{be.name}-{RUN_ID}:v1"
    try:
        info = features.require(be.service, features.Tagging).tag_image(ref, new)
        assert info.name == normalize(new)
        assert be.service.get_image(new).name == normalize(new)
    finally:
        _drop_image(be, new)


def test_commit_saves_a_change_as_an_image_that_runs(be: Backend) -> None:
    cid = be.run()
    _exec_out(be, cid, "sh", "-c", "echo committed > /marker")
    registry = be.images["busybox"].split("/", 1)[0]
    new = f"{registry}/ctr-magic-test/commit-{be.name}-{RUN_ID}:v1"
    try:
        info = features.require(be.service, features.Committing).commit_container(
            cid, new, cmd=["cat", "/marker"], env=["COMMITTED=yes"], message="a marker", author="Ada")
        assert info.name == normalize(new)
        with pytest.raises(errors.AlreadyExists):
            be.service.commit_container(cid, new)
        cid2 = be.new_id()
        be.service.create_container(CreateContainerRequest(id=cid2, image_ref=new, labels={RUN_LABEL: RUN_ID},
                                                           spec=ContainerSpec(cmd=["sleep", "3600"])))
        be.service.start_container(cid2, StartTaskOptions())
        assert _exec_out(be, cid2, "cat", "/marker") == "committed\n"
        assert "COMMITTED=yes" in _exec_out(be, cid2, "env")
    finally:
        for made in be.made:
            be.remove(made)
        _drop_image(be, new)


def test_export_then_import_round_trips_an_image(be: Backend, tmp_path: Path) -> None:
    ref = be.images["busybox"]
    be.service.pull_image(ref)
    archive = tmp_path / "image.tar"
    archives = features.require(be.service, features.ImageArchives)
    registry = ref.split("/", 1)[0]
    copy = f"{registry}/ctr-magic-test/exported-{be.name}-{RUN_ID}:v1"
    features.require(be.service, features.Tagging).tag_image(ref, copy)
    try:
        archives.export_image([copy], str(archive))
        assert archive.stat().st_size > 100_000
        _drop_image(be, copy)
        imported = archives.import_image(str(archive))
        assert normalize(copy) in {i.name for i in imported}
        cid = be.run(image="busybox")  # the image still runs; the imported one is checked by name
        assert _exec_out(be, cid, "echo", "ok") == "ok\n"
    finally:
        _drop_image(be, copy)


def test_push_sends_the_image_with_progress(be: Backend) -> None:
    ref = be.images["busybox"]
    be.service.pull_image(ref)
    registry = ref.split("/", 1)[0]
    dest = f"{registry}/ctr-magic-test/pushed-{be.name}-{RUN_ID}:v1"
    events: list[LayerProgress] = []
    try:
        digest = features.require(be.service, features.Pushing).push_image(ref, dest=dest, progress=events.append)
        assert digest.startswith("sha256:")
        assert events and {e.state for e in events} & {"done", "exists", "uploading"}
        _drop_image(be, dest)
        assert be.service.pull_image(dest).name == normalize(dest)
    finally:
        _drop_image(be, dest)


def test_kill_logs_and_label_filters(be: Backend) -> None:
    cid = be.run(cmd=["sh", "-c", "echo out-line; echo err-line >&2; exec sleep 3600"],
                 labels={"cf.role": f"logger-{RUN_ID}"})
    found = be.service.list_containers_by_label("cf.role", f"logger-{RUN_ID}")
    assert [c.id for c in found] == [cid]
    features.require(be.service, features.Signals).kill_task(cid, 9)
    assert features.require(be.service, features.Signals).wait_task(cid, timeout=60) == 137
    if features.supports(be.service, features.Logs):
        try:
            text = b"".join(be.service.logs(cid, follow=True, timeout=30)).decode()
        except errors.NotFound:
            assert be.name == "containerd"  # started without a log file: declared
        else:
            assert "out-line" in text and "err-line" in text


def test_attached_start_keeps_stdout_and_stderr_apart_and_takes_stdin(be: Backend) -> None:
    cid = be.create(cmd=["sh", "-c", "cat; echo to-err >&2; exit 4"], spec=ContainerSpec(stdin=True))
    session = features.require(be.service, features.Attaching).start_attached(cid, stdin=True)
    try:
        session.stdin.write(b"from-stdin\n")
        session.stdin.close()
        out = session.stdout.read()
        err = session.stderr.read()
        assert session.wait(timeout=60).exit_code == 4
    finally:
        session.close()
    assert out == b"from-stdin\n"
    assert err == b"to-err\n"


def _random_tree(root: Path) -> None:
    rng = secrets.SystemRandom()
    (root / "sub" / "deeper").mkdir(parents=True)
    modes = [0o600, 0o644, 0o755, 0o700]
    for i, where in enumerate([root, root / "sub", root / "sub" / "deeper"] * 3):
        path = where / f"f{i}.bin"
        path.write_bytes(os.urandom(rng.randint(0, 200_000)))
        path.chmod(modes[i % len(modes)])
    (root / "sub" / "link").symlink_to("deeper/f2.bin")


def _digest_tree(root: Path) -> dict[str, tuple[int, str]]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            out[rel] = (0, "->" + os.readlink(path))
        elif path.is_file():
            out[rel] = (stat.S_IMODE(info.st_mode), hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            out[rel] = (stat.S_IMODE(info.st_mode), "dir")
    return out


def test_cp_round_trips_a_directory_of_random_files(be: Backend, tmp_path: Path) -> None:
    source = tmp_path / "data"
    source.mkdir()
    _random_tree(source)
    cid = be.run()
    copier = features.require(be.service, features.Copying)
    moved = copier.copy_to_container(cid, str(source), "/tmp/")
    assert moved > 0
    assert "f0.bin" in _exec_out(be, cid, "ls", "/tmp/data")
    back = tmp_path / "back"
    copier.copy_from_container(cid, "/tmp/data", str(back))
    assert _digest_tree(back) == _digest_tree(source)
    single = tmp_path / "one.bin"
    copier.copy_from_container(cid, "/tmp/data/sub/f1.bin", str(single))
    assert single.read_bytes() == (source / "sub" / "f1.bin").read_bytes()
    copier.copy_to_container(cid, str(single), "/tmp/renamed.bin")
    assert _exec_out(be, cid, "sha256sum", "/tmp/renamed.bin").split()[0] == hashlib.sha256(
        single.read_bytes()).hexdigest()


def test_cp_of_a_missing_path_is_one_line_not_found(be: Backend, tmp_path: Path) -> None:
    cid = be.run()
    copier = features.require(be.service, features.Copying)
    with pytest.raises(errors.NotFound, match="does not exist") as caught:
        copier.copy_from_container(cid, "/no/such/path", str(tmp_path / "x"))
    assert "\n" not in str(caught.value)
    with pytest.raises(errors.NotFound, match="does not exist"):
        copier.copy_to_container(cid, str(tmp_path / "missing"), "/tmp/")
    with pytest.raises(errors.NotFound, match="does not exist"):
        copier.copy_to_container(cid, __file__, "/no/such/dir/")
    assert not (tmp_path / "x").exists()


def test_cp_through_a_link_to_root_stays_in_the_container(be: Backend, tmp_path: Path) -> None:
    cid = be.run()
    _exec_out(be, cid, "ln", "-s", "/", "/tmp/escape")
    name = f"cp-escape-{RUN_ID}-{be.name}.txt"
    local = tmp_path / name
    local.write_text("inside\n")
    features.require(be.service, features.Copying).copy_to_container(cid, str(local), "/tmp/escape/tmp/")
    assert _exec_out(be, cid, "cat", f"/tmp/{name}") == "inside\n"
    assert not Path("/tmp", name).exists(), "the copy landed on the host"


def test_attached_start_with_a_terminal(be: Backend) -> None:
    cid = be.create(cmd=["sh", "-c", "test -t 1 && echo on-a-tty; exit 2"], spec=ContainerSpec(tty=True))
    session = features.require(be.service, features.Attaching).start_attached(cid, terminal=True)
    try:
        out = session.stdout.read()
        assert session.wait(timeout=60).exit_code == 2
    finally:
        session.close()
    assert session.stderr is None  # a terminal has one output stream
    assert b"on-a-tty" in out
