"""Exec on a real containerd: one-shot and streaming, I/O, users, terminals, concurrency, clean-up."""

from __future__ import annotations

import gc
import hashlib
import io
import os
import resource
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import tasks_support
from tasks_support import Tracker, only_init_left, our_temp_dirs, task_pids, tracking, wait_for

from ctr_magic import errors
from ctr_magic.containerd.service import DefaultService
from ctr_magic.types import ContainerSpec, DeleteContainerOptions, ExecTaskRequest, ExecTaskResult

private_tempdir = tasks_support.private_tempdir  # autouse
data_dir = tasks_support.data_dir
svc = tasks_support.svc
images = tasks_support.images


@pytest.fixture(scope="module")
def module_tracker(svc: DefaultService, images: dict[str, str]) -> Iterator[Tracker]:
    with tracking(svc, images["busybox"]) as tracker:
        yield tracker


@pytest.fixture(scope="module")
def box(svc: DefaultService, module_tracker: Tracker) -> str:
    """One running busybox container shared by the exec tests (execs do not change it)."""
    return module_tracker.running()


@pytest.fixture(scope="module")
def config_box(svc: DefaultService, module_tracker: Tracker, images: dict[str, str]) -> str:
    """A running container of the image with Env FOO=bar, WorkingDir /work and User app (1000)."""
    return module_tracker.running(["sleep", "100000"], image=images["config"])


@pytest.fixture(autouse=True)
def no_leaks(svc: DefaultService, box: str) -> Iterator[None]:
    """After every test: no exec process left in the shared container and no FIFO directory left."""
    before = our_temp_dirs()
    yield
    wait_for(lambda: only_init_left(svc, box), what="exec processes to be gone")
    wait_for(lambda: not (our_temp_dirs() - before), what="FIFO directories to be removed")


@pytest.fixture
def made(svc: DefaultService, images: dict[str, str]) -> Iterator[Tracker]:
    with tracking(svc, images["busybox"]) as tracker:
        yield tracker


def run(svc: DefaultService, cid: str, args: list[str], **kwargs: Any) -> tuple[int, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    res = svc.exec_task(cid, ExecTaskRequest(args=args, stdout=out, stderr=err, **kwargs))
    return res.exit_code, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------- one shot


def test_output_streams_and_exit_code(svc: DefaultService, box: str) -> None:
    assert run(svc, box, ["sh", "-c", "echo out; echo err >&2; exit 5"]) == (5, b"out\n", b"err\n")
    assert run(svc, box, ["true"]) == (0, b"", b"")
    assert svc.exec_task(box, ExecTaskRequest(args=["sh", "-c", "exit 7"])) == ExecTaskResult(7)  # no writers


def test_text_and_binary_writers(svc: DefaultService, box: str) -> None:
    text, raw = io.StringIO(), io.BytesIO()
    svc.exec_task(box, ExecTaskRequest(args=["printf", "h\\303\\251llo"], stdout=text, stderr=raw))
    assert text.getvalue() == "héllo"
    svc.exec_task(box, ExecTaskRequest(args=["printf", "\\377\\000x"], stdout=raw))
    assert raw.getvalue() == b"\xff\x00x"


def test_only_one_writer(svc: DefaultService, box: str) -> None:
    err = io.BytesIO()
    res = svc.exec_task(box, ExecTaskRequest(args=["sh", "-c", "echo o; echo e >&2; exit 1"], stderr=err))
    assert res.exit_code == 1 and err.getvalue() == b"e\n"


def test_env_work_dir_and_user(svc: DefaultService, config_box: str) -> None:
    script = "echo $FOO $NEW; pwd; id -u; id -g"
    # From the container's spec: the image's env, working dir and user "app".
    assert run(svc, config_box, ["sh", "-c", script])[1] == b"bar\n/work\n1000\n1000\n"
    code, out, _ = run(svc, config_box, ["sh", "-c", script], env=["NEW=1", "FOO=changed"], work_dir="/tmp",
                       user="root")
    assert (code, out) == (0, b"changed 1\n/tmp\n0\n0\n")
    assert run(svc, config_box, ["sh", "-c", "id -u; id -g"], user="123:456")[1] == b"123\n456\n"
    assert run(svc, config_box, ["sh", "-c", "id -u; id -g"], user="app")[1] == b"1000\n1000\n"
    assert run(svc, config_box, ["sh", "-c", "echo ${FOO-unset}"], env=["FOO"])[1] == b"unset\n"


def test_bad_user_and_work_dir(svc: DefaultService, box: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="ghost"):
        svc.exec_task(box, ExecTaskRequest(args=["true"], user="ghost"))
    with pytest.raises(errors.CtrError, match="/nowhere") as info:
        svc.exec_task(box, ExecTaskRequest(args=["true"], work_dir="/nowhere"))
    assert "\n" not in str(info.value)


def test_stdin_round_trip(svc: DefaultService, box: str, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    code, out, _ = run(svc, box, ["cat"], stdin=data)
    assert code == 0 and hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    assert run(svc, box, ["wc", "-c"], stdin="héllo")[1].strip() == b"6"
    source = tmp_path / "in.bin"
    source.write_bytes(data[:100_000])
    with open(source, "rb") as fh:
        assert run(svc, box, ["md5sum"], stdin=fh)[1].split()[0].decode() == hashlib.md5(data[:100_000]).hexdigest()
    with open(source, "w") as fh:
        fh.write("text file\n")
    with open(source) as fh:
        assert run(svc, box, ["cat"], stdin=fh)[1] == b"text file\n"
    # A process that does not read its stdin still ends; the rest is dropped.
    assert run(svc, box, ["true"], stdin=data)[0] == 0
    assert run(svc, box, ["cat"], stdin=b"")[1] == b""


def test_terminal(svc: DefaultService, box: str) -> None:
    code, out, _ = run(svc, box, ["sh", "-c", "tty; test -t 0 && test -t 1 && echo both; echo $TERM"], terminal=True)
    lines = out.decode().split("\r\n")
    assert code == 0 and lines[0].startswith("/dev/pts/") and lines[1:3] == ["both", "xterm"]
    code, out, _ = run(svc, box, ["cat"], terminal=True, stdin=b"typed\n\x04")
    assert code == 0 and b"typed" in out


def test_use_stdio(svc: DefaultService, box: str, capfd: pytest.CaptureFixture[str]) -> None:
    svc.exec_task(box, ExecTaskRequest(args=["sh", "-c", "echo to-out; echo to-err >&2"], use_stdio=True))
    captured = capfd.readouterr()
    assert "to-out" in captured.out and "to-err" in captured.err


def test_fifo_dir_is_used_and_cleaned(svc: DefaultService, box: str, tmp_path: Path) -> None:
    seen: list[list[str]] = []

    class Spy(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            seen.append(os.listdir(tmp_path))
            return len(b)

    svc.exec_task(box, ExecTaskRequest(args=["echo", "x"], stdout=Spy(), fifo_dir=str(tmp_path)))
    assert seen and seen[0][0].startswith("ctr-magic-io-")
    assert os.listdir(tmp_path) == []


def test_50_concurrent_execs_unmixed(svc: DefaultService, box: str) -> None:
    def one(i: int) -> tuple[int, bytes, bytes]:
        return run(svc, box, ["sh", "-c", f"for n in $(seq 100); do echo {i}-$n; echo e{i}-$n >&2; done; exit {i % 7}"])

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))
    for i, (code, out, err) in enumerate(results):
        assert code == i % 7
        assert out.decode().splitlines() == [f"{i}-{n}" for n in range(1, 101)]
        assert err.decode().splitlines() == [f"e{i}-{n}" for n in range(1, 101)]


@pytest.mark.slow
def test_1000_fast_execs_never_empty(svc: DefaultService, box: str) -> None:
    """docker-py #3332: fast commands sometimes return empty output. Never here."""

    def one(i: int) -> bytes:
        return run(svc, box, ["echo", f"n{i}"])[1]

    with ThreadPoolExecutor(max_workers=4) as pool:
        outputs = list(pool.map(one, range(1000)))
    assert [o for o in outputs if not o] == []
    assert outputs == [f"n{i}\n".encode() for i in range(1000)]


def test_streaming_sessions_of_commands_that_exit_at_once(svc: DefaultService, box: str) -> None:
    """A session opens the process's stdin after Start; a process that has exited by then (the shim's
    reader closed) still gives its output and exit code, and its stdin is a closed pipe. Under load
    this used to fail with "the runtime did not open the process's stdin"."""

    def one(i: int) -> tuple[bytes, int]:
        with svc.exec_task_streaming(box, ExecTaskRequest(args=["sh", "-c", f"echo s{i}; exit {i % 3}"])) as session:
            out = session.stdout.read()
            return out, session.wait().exit_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(80)))
    assert results == [(f"s{i}\n".encode(), i % 3) for i in range(80)]


def test_interrupt_kills_and_cleans_up(svc: DefaultService, box: str) -> None:
    class Interrupting(io.RawIOBase):
        """Raises KeyboardInterrupt as soon as output arrives, as Ctrl-C in a notebook would."""

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            raise KeyboardInterrupt

    before = our_temp_dirs()
    with pytest.raises(KeyboardInterrupt):
        svc.exec_task(box, ExecTaskRequest(args=["sh", "-c", "echo go; exec sleep 1000"], stdout=Interrupting()))
    assert only_init_left(svc, box)  # killed and deleted at once, not left running
    assert not (our_temp_dirs() - before)


def test_ctrl_c_while_waiting_for_output(svc: DefaultService, box: str) -> None:
    """A real SIGINT (the notebook's stop button) while exec_task waits in its poll loop."""

    class InterruptSoon(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
            return len(b)

    before = our_temp_dirs()
    with pytest.raises(KeyboardInterrupt):
        svc.exec_task(box, ExecTaskRequest(args=["sh", "-c", "echo go; exec sleep 1000"], stdout=InterruptSoon()))
    assert only_init_left(svc, box)
    assert not (our_temp_dirs() - before)


def test_a_writer_error_propagates_and_cleans_up(svc: DefaultService, box: str) -> None:
    class Broken(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        svc.exec_task(box, ExecTaskRequest(args=["sh", "-c", "echo go; exec sleep 1000"], stdout=Broken()))
    assert only_init_left(svc, box)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args", [[], "ls -l", ["ls", 3], None])
def test_bad_args(svc: DefaultService, box: str, args: Any) -> None:
    with pytest.raises(errors.InvalidArgument, match="args"):
        svc.exec_task(box, ExecTaskRequest(args=args))
    with pytest.raises(errors.InvalidArgument, match="args"):
        svc.exec_task_streaming(box, ExecTaskRequest(args=args))


def test_bad_container_ids_and_stdin(svc: DefaultService, box: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="container id is empty"):
        svc.exec_task("", ExecTaskRequest(args=["true"]))
    with pytest.raises(errors.NotFound, match="no-such-box"):
        svc.exec_task("no-such-box", ExecTaskRequest(args=["true"]))
    with pytest.raises(errors.InvalidArgument, match="stdin"):
        svc.exec_task(box, ExecTaskRequest(args=["cat"], stdin=12345))


def test_command_not_in_image(svc: DefaultService, box: str) -> None:
    for kwargs in ({}, {"stdout": io.BytesIO()}, {"terminal": True, "stdout": io.BytesIO()}):
        with pytest.raises(errors.CtrError) as info:
            svc.exec_task(box, ExecTaskRequest(args=["no-such-command", "x"], **kwargs))
        message = str(info.value)
        assert "\n" not in message
        assert 'exec: "no-such-command": executable file not found in $PATH' in message
    with pytest.raises(errors.CtrError, match="executable file not found"):
        svc.exec_task_streaming(box, ExecTaskRequest(args=["no-such-command"]))
    # Retrying works: the failed exec ids were deleted.
    assert run(svc, box, ["echo", "ok"])[1] == b"ok\n"


def test_exec_into_stopped_or_unstarted_task(svc: DefaultService, made: Tracker) -> None:
    created = made.create(["true"])
    with pytest.raises(errors.FailedPrecondition, match="no running task"):
        svc.exec_task(created, ExecTaskRequest(args=["true"]))
    svc.start_container(created)
    assert svc.wait_task(created, timeout=30) == 0
    with pytest.raises(errors.FailedPrecondition, match="stopped"):
        svc.exec_task(created, ExecTaskRequest(args=["true"]))
    with pytest.raises(errors.FailedPrecondition, match="stopped"):
        svc.exec_task_streaming(created, ExecTaskRequest(args=["true"]))


def test_spec_cache_follows_recreated_container(svc: DefaultService, made: Tracker, images: dict[str, str]) -> None:
    cid = made.running()
    assert run(svc, cid, ["sh", "-c", "echo ${FOO-none}"])[1] == b"none\n"
    svc.delete_container(cid, DeleteContainerOptions(force=True))
    made.create(["sleep", "100000"], cid=cid, image=images["config"], spec=ContainerSpec(user="root"))
    svc.start_container(cid)
    assert run(svc, cid, ["sh", "-c", "echo ${FOO-none}"])[1] == b"bar\n"


# --------------------------------------------------------------------------- streaming


def test_session_is_interactive(svc: DefaultService, box: str) -> None:
    with svc.exec_task_streaming(box, ExecTaskRequest(args=["sh", "-c", "while read l; do echo got $l; "
                                                           "echo err $l >&2; done; exit 3"])) as session:
        assert session.stdin is not None and session.stdout is not None and session.stderr is not None
        session.stdin.write(b"one\n")
        assert session.stdout.readline() == b"got one\n"  # arrives while the process keeps running
        assert session.stderr.readline() == b"err one\n"
        session.stdin.write("two\n")
        assert session.stdout.readline() == b"got two\n"
        session.stdin.close()  # EOF: the loop ends
        assert session.wait(timeout=30) == ExecTaskResult(3)
        assert session.stdout.read() == b""
        assert session.stderr.read() == b"err two\n"


def test_session_with_stdin_data(svc: DefaultService, box: str) -> None:
    data = os.urandom(2 * 1024 * 1024)
    with svc.exec_task_streaming(box, ExecTaskRequest(args=["cat"], stdin=data)) as session:
        assert session.stdout.read() == data  # type: ignore[union-attr]
        assert session.wait().exit_code == 0


def test_session_close_kills_a_running_process(svc: DefaultService, box: str) -> None:
    session = svc.exec_task_streaming(box, ExecTaskRequest(args=["sleep", "1000"]))
    assert len(task_pids(svc, box)) == 2
    with pytest.raises(errors.Interrupted, match="still running"):
        session.wait(timeout=0.2)
    session.close()
    session.close()  # idempotent
    assert only_init_left(svc, box)
    assert session.stdout.closed  # type: ignore[union-attr]


def test_session_back_pressure(svc: DefaultService, box: str) -> None:
    size = 32 * 1024 * 1024  # far more than the pipes hold
    with svc.exec_task_streaming(box, ExecTaskRequest(args=["head", "-c", str(size), "/dev/zero"])) as session:
        with pytest.raises(errors.Interrupted):
            session.wait(timeout=0.5)  # blocked writing: nobody reads
        total = 0
        while chunk := session.stdout.read1(1 << 20):  # type: ignore[union-attr]
            total += len(chunk)
        assert total == size and session.wait(timeout=30).exit_code == 0


@pytest.mark.slow
def test_session_1gib_flat_memory(svc: DefaultService, box: str) -> None:
    size = 1 << 30
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    buf = bytearray(1 << 20)
    total = 0
    with svc.exec_task_streaming(box, ExecTaskRequest(args=["head", "-c", str(size), "/dev/zero"])) as session:
        while n := session.stdout.readinto(buf):  # type: ignore[union-attr]
            total += n
        assert session.wait().exit_code == 0
    assert total == size
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mib < 64, f"memory grew by {grown_mib:.0f} MiB"


def test_many_sessions_at_once(svc: DefaultService, box: str) -> None:
    sessions = [svc.exec_task_streaming(box, ExecTaskRequest(args=["cat"])) for _ in range(20)]
    try:
        for i, session in enumerate(sessions):
            session.stdin.write(f"session {i}\n".encode())  # type: ignore[union-attr]
        for i, session in enumerate(sessions):
            assert session.stdout.readline() == f"session {i}\n".encode()  # type: ignore[union-attr]
            session.stdin.close()  # type: ignore[union-attr]
        assert [s.wait(timeout=30).exit_code for s in sessions] == [0] * 20
    finally:
        for session in sessions:
            session.close()


def test_forgotten_session_is_cleaned_up(svc: DefaultService, box: str) -> None:
    session = svc.exec_task_streaming(box, ExecTaskRequest(args=["sleep", "1000"]))
    assert len(task_pids(svc, box)) == 2
    del session  # garbage: the finalizer kills and deletes it
    gc.collect()
    assert only_init_left(svc, box)
