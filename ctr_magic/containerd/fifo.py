"""Process I/O through FIFOs, the way containerd's runc shim expects it.

The shim opens the FIFOs named in a Create/Exec request on the daemon's host: it writes the
process's stdout/stderr into theirs and reads stdin from its own. We make the FIFOs in a private
temporary directory, open the read ends with O_NONBLOCK *before* the request (so the shim's
blocking open of its write end finds a reader and nothing waits on anyone), and remove the whole
directory when done, whatever happens.

A FIFO opened before any writer reads as EOF, so output is read only once the shim has opened
its ends (after Start returned). The stdin write end is opened after Start too: the shim's
reader exists by then.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import logging
import os
import select
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Optional

from .. import errors
from ..constants import FIFO_DIR_PREFIX
from ..stdio import Sink

log = logging.getLogger(__name__)

F_SETPIPE_SZ = 1031
#: Bigger pipes mean fewer wake-ups when a process streams a lot (GiBs through stdout).
PIPE_SIZE = 1 << 20
READ_CHUNK = 1 << 20



def _grow_pipe(fd: int) -> None:
    # Over /proc/sys/fs/pipe-max-size for an unprivileged user: the default size is fine.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)


# How long to keep trying to open a live process's stdin, and how long each look at its exit waits.
_STDIN_OPEN_DEADLINE = 10.0
_STDIN_OPEN_POLL = 0.005


class FifoSet:
    """stdin/stdout/stderr FIFOs for one process, in a private directory under *base_dir*."""

    def __init__(self, base_dir: str = "", *, stdin: bool = False, stdout: bool = True, stderr: bool = True) -> None:
        if base_dir:
            os.makedirs(base_dir, mode=0o700, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix=FIFO_DIR_PREFIX, dir=base_dir or None)
        self.stdin_path = self.stdout_path = self.stderr_path = ""
        self.stdout_fd: Optional[int] = None
        self.stderr_fd: Optional[int] = None
        self.stdin_fd: Optional[int] = None
        self._lock = threading.Lock()
        try:
            if stdin:
                self.stdin_path = self._make("stdin")
            if stdout:
                self.stdout_path = self._make("stdout")
                self.stdout_fd = self._open_reader(self.stdout_path)
            if stderr:
                self.stderr_path = self._make("stderr")
                self.stderr_fd = self._open_reader(self.stderr_path)
        except BaseException:
            self.close()
            raise

    def _make(self, name: str) -> str:
        path = os.path.join(self.dir, name)
        os.mkfifo(path, 0o600)
        return path

    @staticmethod
    def _open_reader(path: str) -> int:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        _grow_pipe(fd)
        return fd

    def open_stdin(self, exited: Optional[Callable[[float], bool]] = None) -> int:
        """Open our (non-blocking) write end of stdin; call after the shim opened its reader.

        A process that exits at once can be gone, and the shim's reader closed, before we open
        our end (the open fails with ENXIO). *exited(timeout)* says whether it has exited, waiting
        up to *timeout*; when it has, stdin becomes a pipe nobody reads, as for any process that
        ended: writes raise BrokenPipeError and the output is still there to read.
        """
        if not self.stdin_path:
            raise errors.CtrError("this process has no stdin FIFO")
        deadline = time.monotonic() + _STDIN_OPEN_DEADLINE
        while True:
            try:
                self.stdin_fd = os.open(self.stdin_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            if exited is not None and exited(_STDIN_OPEN_POLL):
                log.debug("the process exited before its stdin was opened; stdin is closed")
                read_end, self.stdin_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                os.close(read_end)
                return self.stdin_fd
            if exited is None or time.monotonic() > deadline:
                raise errors.CtrError("the runtime did not open the process's stdin")
        _grow_pipe(self.stdin_fd)
        return self.stdin_fd

    def take(self, name: str) -> Optional[int]:
        """Hand the fd over to the caller (who closes it from now on)."""
        with self._lock:
            fd = getattr(self, f"{name}_fd")
            setattr(self, f"{name}_fd", None)
            return fd

    def close_fd(self, name: str) -> None:
        fd = self.take(name)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Close what is still open and remove the directory (idempotent)."""
        for name in ("stdin", "stdout", "stderr"):
            with contextlib.suppress(OSError):
                self.close_fd(name)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> FifoSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- the copy loop


def pump(
    fifos: FifoSet,
    sinks: dict[str, Optional[Sink]],
    stdin: Optional[Iterator[bytes]] = None,
    on_stdin_closed: Optional[Callable[[], None]] = None,
) -> None:
    """Copy stdout/stderr into their sinks and *stdin* into the process until both outputs end.

    One thread, one poll loop, no busy waiting; Ctrl-C raises KeyboardInterrupt out of it.
    ``on_stdin_closed`` runs once our stdin end is closed (to tell the shim: CloseIO).
    """
    poller = select.poll()
    readers: dict[int, tuple[str, Optional[Sink]]] = {}
    for name in ("stdout", "stderr"):
        fd = getattr(fifos, f"{name}_fd")
        if fd is not None:
            readers[fd] = (name, sinks.get(name))
            poller.register(fd, select.POLLIN)
    buf = bytearray(READ_CHUNK)
    view = memoryview(buf)
    pending = b""
    stdin_fd = fifos.stdin_fd
    if stdin_fd is not None:
        poller.register(stdin_fd, select.POLLOUT)

    def close_stdin() -> None:
        nonlocal stdin_fd
        if stdin_fd is None:
            return
        poller.unregister(stdin_fd)
        fifos.close_fd("stdin")
        stdin_fd = None
        if on_stdin_closed is not None:
            on_stdin_closed()

    while readers:
        for fd, _events in poller.poll():
            if fd == stdin_fd:
                try:
                    while True:
                        if not pending:
                            pending = next(stdin, b"") if stdin is not None else b""
                            if not pending:
                                close_stdin()
                                break
                        written = os.write(fd, pending)
                        pending = pending[written:]
                except BlockingIOError:
                    pass
                except BrokenPipeError:
                    log.debug("process closed its stdin early")
                    close_stdin()
                continue
            if fd not in readers:
                continue
            name, sink = readers[fd]
            try:
                n = os.readv(fd, [buf])
            except BlockingIOError:
                continue
            if n == 0:
                poller.unregister(fd)
                del readers[fd]
                fifos.close_fd(name)
                continue
            if sink is not None:
                sink(view[:n])
    close_stdin()


def copy_in_background(fifos: FifoSet, sinks: dict[str, Optional[Sink]], name: str = "io",
                       on_done: Optional[Callable[[], None]] = None) -> threading.Thread:
    """Run :func:`pump` on a daemon thread; the FIFO directory is removed when the output ends."""

    def run() -> None:
        try:
            pump(fifos, sinks)
        except Exception:
            log.warning("copying the output of %s failed", name, exc_info=True)
        finally:
            fifos.close()
            if on_done is not None:
                on_done()

    thread = threading.Thread(target=run, name=f"ctr-magic-copy-{name}", daemon=True)
    thread.start()
    return thread


def append_to_file(path: str) -> tuple[Sink, Callable[[], None]]:
    """A sink appending to *path* (flushed per chunk, so readers see it at once) and its closer."""
    fh = open(path, "ab", buffering=0)  # noqa: SIM115  (closed by the returned closer)

    def write(chunk: memoryview) -> None:
        fh.write(chunk)

    return write, fh.close


class _FifoEnd(io.RawIOBase):
    """One blocking end of a session's FIFO; ``close()`` closes the descriptor."""

    def __init__(self, fd: int, name: str) -> None:
        super().__init__()
        os.set_blocking(fd, True)
        self._fd = fd
        self.name = name  # type: ignore[misc]

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        super().close()


class FifoReader(_FifoEnd):
    """A blocking, readable FIFO end (a session's stdout or stderr)."""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed stream")
        return os.readv(self._fd, [b])


class FifoWriter(_FifoEnd):
    """A blocking, writable FIFO end (a session's stdin); ``close()`` sends EOF to the process."""

    def __init__(self, fd: int, on_close: Callable[[], None]) -> None:
        super().__init__(fd, "stdin")
        self._on_close = on_close

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        """Write all of *b* (str is sent as UTF-8); blocks while the process is not reading."""
        if self.closed:
            raise ValueError("write to closed stdin")
        data = memoryview(b.encode() if isinstance(b, str) else b).cast("B")
        total = len(data)
        while data:
            written = os.write(self._fd, data)
            data = data[written:]
        return total

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        try:
            self._on_close()
        except Exception:
            log.debug("closing stdin: telling the runtime failed", exc_info=True)

    def detach_quietly(self) -> None:
        """Close without telling the runtime (the process is being deleted anyway)."""
        self._on_close = lambda: None
        self.close()

