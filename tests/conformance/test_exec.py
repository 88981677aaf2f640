"""Conformance: exec (output, exit code, stdin, env, work dir, user, stderr, terminal, streaming)."""

from __future__ import annotations

import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ctr_magic import errors
from ctr_magic.types import ExecTaskRequest, StopTaskOptions

from .conftest import Backend


def run(be: Backend, cid: str, *args: str, **kwargs: object) -> tuple[int, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    result = be.service.exec_task(cid, ExecTaskRequest(args=list(args), stdout=out, stderr=err, **kwargs))
    return result.exit_code, out.getvalue(), err.getvalue()


def test_output_and_exit_code(be: Backend, box: str) -> None:
    code, out, err = run(be, box, "sh", "-c", "echo to-out; echo to-err >&2; exit 3")
    assert code == 3
    assert be.supports("exec.stderr")
    assert out == b"to-out\n"
    assert err == b"to-err\n"


def test_text_writers_get_text(be: Backend, box: str) -> None:
    out = io.StringIO()
    result = be.service.exec_task(box, ExecTaskRequest(args=["printf", "gr\\303\\274\\303\\237e"], stdout=out))
    assert result.exit_code == 0
    assert out.getvalue() == "grüße"


def test_stdin_round_trip_is_binary_safe(be: Backend, box: str) -> None:
    assert be.supports("exec.stdin")
    data = os.urandom(300_000)
    code, out, _ = run(be, box, "cat", stdin=data)
    assert code == 0
    assert out == data


@pytest.mark.parametrize("kind", ["str", "file"])
def test_stdin_from_str_and_file(be: Backend, box: str, kind: str) -> None:
    text = "line one\nline two\n"
    source: object = text if kind == "str" else io.BytesIO(text.encode())
    code, out, _ = run(be, box, "wc", "-l", stdin=source)
    assert code == 0
    assert out.split() == [b"2"]


def test_env_work_dir_and_user(be: Backend, box: str) -> None:
    assert be.supports("exec.env_workdir_user")
    code, out, _ = run(be, box, "sh", "-c", "echo $GREETING; pwd; id -u", env=["GREETING=hi there"],
                       work_dir="/tmp", user="1000")
    assert code == 0
    assert out == b"hi there\n/tmp\n1000\n"


def test_terminal(be: Backend, box: str) -> None:
    assert be.supports("exec.terminal")
    code, out, _ = run(be, box, "readlink", "/proc/self/fd/1", terminal=True)
    assert code == 0
    assert out.strip().startswith(b"/dev/pts/")


def test_missing_command_is_an_error_naming_it(be: Backend, box: str) -> None:
    assert be.supports("exec.start_error")
    with pytest.raises(errors.CtrError, match="no-such-binary"):
        be.service.exec_task(box, ExecTaskRequest(args=["/no-such-binary"]))


def test_empty_args_are_invalid(be: Backend, box: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        be.service.exec_task(box, ExecTaskRequest(args=[]))
    with pytest.raises(errors.InvalidArgument):
        be.service.exec_task_streaming(box, ExecTaskRequest(args=[]))


def test_exec_in_a_stopped_container_is_refused(be: Backend) -> None:
    cid = be.run()
    be.service.stop_container(cid, StopTaskOptions(timeout=0, force=True))
    with pytest.raises((errors.FailedPrecondition, errors.NotFound)):
        be.service.exec_task(cid, ExecTaskRequest(args=["true"]))


def test_streaming_session(be: Backend, box: str) -> None:
    assert be.supports("exec.streaming")
    req = ExecTaskRequest(args=["sh", "-c", "while read line; do echo \"got $line\"; done; echo bye >&2; exit 5"])
    with be.service.exec_task_streaming(box, req) as session:
        assert session.stdin is not None and session.stdout is not None and session.stderr is not None
        session.stdin.write(b"one\n")
        session.stdin.flush()
        assert session.stdout.readline() == b"got one\n"  # answered while the process still runs
        session.stdin.write(b"two\n")
        session.stdin.close()
        assert session.stdout.read() == b"got two\n"
        assert session.stderr.read() == b"bye\n"
        assert session.wait().exit_code == 5


def test_streaming_large_output_with_back_pressure(be: Backend, box: str) -> None:
    size = 16 << 20
    req = ExecTaskRequest(args=["dd", "if=/dev/zero", "bs=65536", f"count={size >> 16}"])
    with be.service.exec_task_streaming(box, req) as session:
        assert session.stdout is not None and session.stderr is not None
        errbuf: list[bytes] = []
        reader = threading.Thread(target=lambda: errbuf.append(session.stderr.read()))  # type: ignore[union-attr]
        reader.start()
        total = 0
        while chunk := session.stdout.read(1 << 16):
            assert not chunk.strip(b"\0")
            total += len(chunk)
        reader.join(30)
        assert total == size
        assert session.wait().exit_code == 0
        assert b"records out" in errbuf[0]


def test_concurrent_execs_keep_their_outputs_apart(be: Backend, box: str) -> None:
    def one(i: int) -> tuple[int, bytes]:
        code, out, _ = run(be, box, "sh", "-c", f"for n in 1 2 3; do echo {i}-$n; done")
        return code, out

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(24)))
    for i, (code, out) in enumerate(results):
        assert code == 0
        assert out == f"{i}-1\n{i}-2\n{i}-3\n".encode()


def test_fast_execs_never_lose_output(be: Backend, box: str) -> None:
    for i in range(30):
        code, out, _ = run(be, box, "echo", str(i))
        assert (code, out) == (0, f"{i}\n".encode())
