"""Exec over the Engine API: the hijacked stream, its demultiplexing, stdin, and the exit code.

One :class:`ExecProcess` per exec. ``pump()`` reads the stream and hands stdout and stderr to two
sinks; ``exit_code()`` reads the exit code from ``GET /exec/{id}/json``, polling with a deadline
while the daemon has not recorded it yet. For daemons whose upgraded stream may stay open after
the process exits (socktainer), a watchdog ends the stream once exec inspect says the process is
gone and the stream has been idle for a grace period.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal as _signal
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Optional

from .. import errors
from ..stdio import WriterSink, stdin_chunks
from ..types import ExecTaskResult, ExecTaskSession
from .api import EngineAPI
from .frames import STDERR, STDOUT, SYSTEMERR, iter_frames
from .transport import HijackedConnection

log = logging.getLogger(__name__)

Sink = Callable[[bytes], None]

# Docker writes a failed exec start ("OCI runtime exec failed: ...") into the stdout stream and
# records exit code 126/127 with pid 0; the contract wants an error with the runtime's reason.
_START_FAILURE_PREFIXES = (b"OCI runtime exec failed", b"exec failed:", b"OCI runtime exec")
_START_FAILURE_CODES = (126, 127)
_PIPE_SIZE = 1 << 20
_HOLD_MAX = 4096


def _exited(info: dict[str, Any]) -> bool:
    """Has the daemon recorded the exit of the exec that *info* (exec inspect) describes?"""
    return not info.get("Running") and info.get("ExitCode") is not None


class ExecProcess:
    """A started exec: ``pump()`` its output into sinks, then ``exit_code()``."""

    def __init__(
        self,
        api: EngineAPI,
        container_id: str,
        exec_id: str,
        conn: HijackedConnection,
        *,
        tty: bool,
        args: list[str],
        exit_deadline: float = 10.0,
        hang_grace: Optional[float] = None,
    ) -> None:
        self.api = api
        self.container_id = container_id
        self.exec_id = exec_id
        self.conn = conn
        self.tty = tty
        self.args = args
        self.exit_deadline = exit_deadline
        self.hang_grace = hang_grace
        self.error: Optional[BaseException] = None
        self.start_failure = ""
        self._done = threading.Event()
        self._in_recv = False
        self._last_data = time.monotonic()
        self._exit_code: Optional[int] = None

    # -- reading ------------------------------------------------------------------------------------
    def _recv(self, n: int) -> bytes:
        self._in_recv = True
        try:
            data = self.conn.recv(n)
        except OSError:
            data = b""  # shut down by close() or the watchdog, or reset by the daemon
        finally:
            self._in_recv = False
        self._last_data = time.monotonic()
        return data

    def pump(self, stdout: Sink, stderr: Sink) -> None:
        """Read the stream to its end, handing each piece to its sink. Errors go to ``self.error``."""
        held = b""
        holding = False
        first = True
        daemon_errors: list[bytes] = []
        try:
            if self.hang_grace is not None:
                threading.Thread(target=self._watchdog, name=f"exec-watch-{self.exec_id[:8]}", daemon=True).start()
            for stream, data in iter_frames(self._recv, multiplexed=not self.tty):
                if first:
                    first = False
                    # Maybe the daemon's report of a failed start: held back and decided at the end.
                    holding = stream == STDOUT and data.startswith(_START_FAILURE_PREFIXES)
                if holding:
                    if stream == STDOUT and len(held) + len(data) <= _HOLD_MAX:
                        held += data
                        continue
                    holding = False
                    stdout(held)
                    held = b""
                if stream == STDERR:
                    stderr(data)
                elif stream == SYSTEMERR:
                    daemon_errors.append(data)
                else:
                    stdout(data)
            if holding:
                if self._failed_to_start():
                    self.start_failure = held.decode("utf-8", "replace").strip().splitlines()[0]
                else:
                    stdout(held)
            if daemon_errors:
                self.start_failure = b"".join(daemon_errors).decode("utf-8", "replace").strip()
        except BaseException as exc:  # surfaced by wait(); KeyboardInterrupt too when pumping inline
            self.error = exc
        finally:
            self._done.set()

    def _failed_to_start(self) -> bool:
        info = self._inspect_exited()
        return info is not None and not info.get("Pid") and info.get("ExitCode") in _START_FAILURE_CODES

    def _watchdog(self) -> None:
        interval = 0.05
        while not self._done.wait(interval):
            interval = min(interval * 2, 1.0)
            try:
                info = self.api.exec_inspect(self.exec_id)
            except errors.CtrError:
                continue
            exited = _exited(info)
            idle = time.monotonic() - self._last_data
            if exited and self._in_recv and idle >= (self.hang_grace or 0.0):
                log.debug("exec %s exited but its stream stayed open; ending the stream", self.exec_id[:12])
                self.conn.shutdown()
                return

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def wait_pumped(self, timeout: Optional[float] = None) -> bool:
        """Wait (interruptibly) until the stream ended; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.is_set():
            left = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if left <= 0:
                return False
            self._done.wait(left)
        return True

    # -- exit code ----------------------------------------------------------------------------------
    def _inspect_exited(self) -> Optional[dict[str, Any]]:
        """Exec inspect once the daemon recorded the exit, polling up to the deadline; None if never."""
        deadline = time.monotonic() + self.exit_deadline
        delay = 0.001
        while True:
            info = self.api.exec_inspect(self.exec_id)
            if _exited(info):
                return info
            if time.monotonic() >= deadline:
                return None
            time.sleep(delay)  # polling the daemon with a deadline: it offers no wait for an exec
            delay = min(delay * 2, 0.1)

    def exit_code(self) -> int:
        if self._exit_code is not None:
            return self._exit_code
        if self.error is not None:
            raise self.error
        if self.start_failure:
            raise errors.CtrError(
                f"exec {' '.join(self.args)!r} in container {self.container_id} failed to start: "
                f"{self.start_failure}"
            )
        info = self._inspect_exited()
        if info is None:
            raise errors.Unavailable(
                f"exec {' '.join(self.args)!r} in container {self.container_id}: the daemon did not report an "
                f"exit code within {self.exit_deadline:.0f}s"
            )
        code = int(info["ExitCode"])
        if code == -1:
            log.warning("exec %s in %s: the daemon reports exit code -1 (its wait stalled)",
                        self.exec_id[:12], self.container_id)
        self._exit_code = code
        return code

    # -- cleanup ------------------------------------------------------------------------------------
    def kill(self) -> None:
        """Best effort: the Engine API cannot kill an exec, so kill it on the host when it is ours.

        Only when the exec's pid is visible here and lives in the container's pid namespace (a local
        daemon); otherwise the process runs on until it ends or the container stops.
        """
        try:
            info = self._inspect_started()
            if info is None:
                return
            pid = int(info["Pid"])
            container = str(info.get("ContainerID") or self.container_id)
            init_pid = int(self.api.container_inspect(container).get("State", {}).get("Pid") or 0)
            if init_pid and pid != init_pid and os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(
                f"/proc/{init_pid}/ns/pid"
            ):
                os.kill(pid, _signal.SIGKILL)
                log.debug("killed exec %s (pid %d)", self.exec_id[:12], pid)
                return
        except (OSError, ValueError, errors.CtrError):
            log.debug("could not kill exec %s on the host", self.exec_id[:12], exc_info=True)
        log.warning("exec %s in %s may keep running: the Engine API has no call to kill an exec",
                    self.exec_id[:12], self.container_id)

    def _inspect_started(self) -> Optional[dict[str, Any]]:
        """Exec inspect once the daemon recorded the pid (it may lag the first output); None if it ended."""
        deadline = time.monotonic() + 2.0
        delay = 0.005
        while True:
            info = self.api.exec_inspect(self.exec_id)
            if _exited(info):
                return None
            if info.get("Pid") or time.monotonic() >= deadline:
                return info
            time.sleep(delay)  # polling with a deadline: Docker records the pid after the start returns
            delay = min(delay * 2, 0.1)

    def close(self) -> None:
        self.conn.close()


# ---------------------------------------------------------------------------------------- stdin


def feed_stdin(conn: HijackedConnection, source: Any) -> None:
    """Send bytes, str or a readable file to the process, then half-close (end-of-file for it)."""
    try:
        for chunk in stdin_chunks(source):
            conn.send(chunk)
    except OSError:
        log.debug("stdin: the process stopped reading", exc_info=True)
    finally:
        conn.close_write()


class SocketStdin(io.RawIOBase):
    """The writable ``stdin`` of a streaming session; ``close()`` half-closes the connection."""

    def __init__(self, conn: HijackedConnection) -> None:
        super().__init__()
        self._conn = conn

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("write to a closed stdin")
        if isinstance(data, str):
            data = data.encode()
        data = bytes(data)
        self._conn.send(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._conn.close_write()
        super().close()


# ---------------------------------------------------------------------------------------- sinks


class PipeSink:
    """Writes into a pipe whose read end the caller holds: blocking gives back-pressure."""

    def __init__(self) -> None:
        read_fd, self._fd = os.pipe()
        with contextlib.suppress(OSError, AttributeError):
            import fcntl

            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        self.reader: IO[bytes] = open(read_fd, "rb")  # noqa: SIM115  (the session's stdout; its owner closes it)
        self._dropped = False

    def __call__(self, data: bytes) -> None:
        if self._dropped:
            return
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except (BrokenPipeError, OSError):
            self._dropped = True  # the caller closed its reader: drop the rest of this stream

    def finish(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# ---------------------------------------------------------------------------------------- session


def streaming_session(process: ExecProcess) -> ExecTaskSession:
    """An ExecTaskSession whose pump runs in a thread feeding two pipes."""
    out, err = PipeSink(), PipeSink()
    stdin = SocketStdin(process.conn)

    def run() -> None:
        try:
            process.pump(out, err)
        finally:
            out.finish()
            err.finish()

    thread = threading.Thread(target=run, name=f"exec-{process.exec_id[:8]}", daemon=True)
    thread.start()
    closed = False

    def wait(timeout: Optional[float] = None) -> ExecTaskResult:
        if not process.wait_pumped(timeout):
            raise errors.Interrupted(
                f"exec {' '.join(process.args)!r} in container {process.container_id} still running after "
                f"{timeout}s"
            )
        return ExecTaskResult(exit_code=process.exit_code())

    def close() -> None:
        nonlocal closed
        if closed:
            return
        closed = True
        if not process.finished:
            process.kill()
        process.conn.shutdown()
        for reader in (out.reader, err.reader):
            reader.close()  # a pump blocked on a full pipe sees EPIPE and moves on
        thread.join(5.0)
        with contextlib.suppress(ValueError, OSError):
            stdin.close()
        process.close()

    return ExecTaskSession(stdin=stdin, stdout=out.reader, stderr=err.reader, wait=wait, close=close)


def start_feeder(process: ExecProcess, stdin: Any) -> threading.Thread:
    """A daemon thread writing *stdin* into the exec's connection, then half-closing it."""
    feeder = threading.Thread(target=feed_stdin, args=(process.conn, stdin),
                              name=f"exec-stdin-{process.exec_id[:8]}", daemon=True)
    feeder.start()
    return feeder


def attach_stdio(api: EngineAPI, cid: str, name: str, tty: bool) -> None:
    """Copy the container's output to this process's stdout/stderr until it exits (before start: nothing lost)."""
    conn = api.container_attach(cid)
    out, err = WriterSink(sys.stdout), WriterSink(sys.stderr)

    def pump() -> None:
        try:
            for stream, data in iter_frames(conn.recv, multiplexed=not tty):
                (err if stream == STDERR else out)(data)
        except (OSError, ValueError):
            log.debug("attach to %s ended", name, exc_info=True)
        finally:
            out.finish()
            err.finish()
            conn.close()

    threading.Thread(target=pump, name=f"attach-{name}", daemon=True).start()


__all__ = ["ExecProcess", "PipeSink", "SocketStdin", "attach_stdio", "feed_stdin", "start_feeder", "streaming_session"]
