"""How a log follower knows the shim has written its last bytes: the writer closes the file.

These use ordinary child processes in place of the shim: the helpers only look at /proc.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ctr_magic.containerd.shimwatch import find_shim, holds_open, parent_pid, wait_until_closed


def test_parent_pid_of_a_child_is_us() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert parent_pid(child.pid) == os.getpid()
    finally:
        child.communicate(b"")


def test_parent_pid_of_a_gone_process_is_unknown() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert parent_pid(child.pid) is None


def test_holds_open_sees_a_writer_until_it_closes(tmp_path: Path) -> None:
    log_file = tmp_path / "task.log"
    log_file.touch()
    script = (f"import sys; f = open({str(log_file)!r}, 'ab'); print('opened', flush=True); "
              "sys.stdin.readline(); f.close(); sys.stdin.read()")
    writer = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"opened\n"
        assert wait_until_closed(writer.pid, str(log_file), 0.3) is False  # still open: times out
        assert holds_open(writer.pid, str(log_file)) is True
        assert writer.stdin is not None
        writer.stdin.write(b"close\n")
        writer.stdin.flush()
        assert wait_until_closed(writer.pid, str(log_file), 10.0) is True
        assert holds_open(writer.pid, str(log_file)) is False
    finally:
        writer.communicate(b"")


def test_a_gone_writer_holds_nothing(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert holds_open(child.pid, str(tmp_path / "x.log")) is False
    assert wait_until_closed(child.pid, str(tmp_path / "x.log"), 1.0) is True


def test_find_shim_by_namespace_and_exact_id() -> None:
    # A stand-in whose command line reads like a shim's (argv[0] is what /proc shows).
    argv = ["containerd-shim-runc-v2", "-c", "import sys; print('up', flush=True); sys.stdin.read()",
            "-namespace", "ns-watch-test", "-id", "box-12", "-address", "/x.sock"]
    fake = subprocess.Popen(argv, executable=sys.executable, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        # Popen may return (vfork) before the kernel has set up the new command line: wait for the child.
        assert fake.stdout is not None and fake.stdout.readline() == b"up\n"
        assert find_shim("ns-watch-test", "box-12") == fake.pid
        assert find_shim("ns-watch-test", "box-1") is None  # a prefix of the id is another container
        assert find_shim("other-ns", "box-12") is None
    finally:
        fake.communicate(b"")
