"""Opening a process's stdin FIFO when the process may already be gone (real FIFOs, no daemon).

Without a shim, nobody opens the FIFO's read end: exactly what our side sees when a process
exited (and the shim closed its reader) before we opened our end.
"""

from __future__ import annotations

import os

import pytest

from ctr_magic import errors
from ctr_magic.containerd.fifo import FifoSet


def test_stdin_of_a_process_that_already_exited_is_a_closed_pipe() -> None:
    looks: list[float] = []

    def exited(timeout: float) -> bool:
        looks.append(timeout)
        return len(looks) >= 3  # still running at the first two looks, then gone

    with FifoSet("", stdin=True, stdout=True, stderr=False) as fifos:
        fd = fifos.open_stdin(exited)
        assert fd == fifos.stdin_fd and len(looks) == 3
        with pytest.raises(BrokenPipeError):
            os.write(fd, b"nobody reads this\n")


def test_stdin_is_opened_when_the_reader_is_there() -> None:
    with FifoSet("", stdin=True, stdout=False, stderr=False) as fifos:
        reader = os.open(fifos.stdin_path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            fd = fifos.open_stdin(lambda timeout: pytest.fail("a live reader needs no look at the exit"))
            os.write(fd, b"hello")
            assert os.read(reader, 5) == b"hello"
        finally:
            os.close(reader)


def test_without_a_way_to_ask_a_missing_reader_is_an_error() -> None:
    with FifoSet("", stdin=True, stdout=False, stderr=False) as fifos, pytest.raises(errors.CtrError) as caught:
        fifos.open_stdin()
    assert "did not open the process's stdin" in str(caught.value)
