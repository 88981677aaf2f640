"""The kernel's side of a Python agent: one long-lived ``python3`` in a container, over an exec stream.

:class:`PythonAgent` starts the agent with ``exec_task_streaming`` (so it works on every backend:
no network, no mounts), checks the container's Python once, and runs cells: values in, output
streamed to callbacks as it arrives, values out. The agent's namespace lives as long as the agent,
so a container used cell after cell keeps its Python state like a second kernel.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from .. import errors
from ..types import ExecTaskRequest
from . import wire
from .bootstrap import agent_command, agent_stdin_prefix

log = logging.getLogger(__name__)

MIN_PYTHON = (3, 7)
#: Seconds an interrupted cell gets to stop before the agent is killed.
INTERRUPT_GRACE = 10.0
_POLL = 0.1
_EXIT_NO_COMMAND = (126, 127)

Sink = Callable[[bytes], None]


class NoPython(errors.NotFound):
    """The container has no (usable) python3."""


class CannotCross(errors.InvalidArgument):
    """A variable cannot be sent to, or brought back from, the container in the chosen format."""


class RemoteError(errors.CtrError):
    """The cell raised inside the container; ``remote_traceback`` holds the full traceback."""

    def __init__(self, message: str, *, remote_type: str, remote_traceback: str) -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback


class AgentGone(errors.CtrError):
    """The agent process ended (killed, out of memory, container stopped) while in use."""

    def __init__(self, message: str, *, exit_code: Optional[int]) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def local_libraries() -> dict[str, str]:
    """Versions of the libraries whose codecs the kernel can use (empty string: absent)."""
    from importlib import metadata

    out = {}
    for name in ("numpy", "pandas", "pyarrow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = ""
    return out


@dataclass(frozen=True)
class AgentInfo:
    """What the agent said of itself when it started."""

    python: str
    version_info: tuple[int, ...]
    pickle_protocol: int
    pid: int
    libraries: dict[str, str]


class PythonAgent:
    """One agent in *container_id*; :meth:`run` executes a cell there."""

    def __init__(self, service: Any, container_id: str, *, python: str = "python3",
                 start_timeout: float = 60.0) -> None:
        self.service = service
        self.container_id = container_id
        self.python = python
        self.interrupt_grace = INTERRUPT_GRACE
        self._events: queue.Queue[tuple[str, Any, Any]] = queue.Queue()
        self._stderr_tail = bytearray()
        self._closed = False
        self._ended = threading.Event()
        self._local = local_libraries()
        self.session = self._start_exec()
        try:
            self._start_readers()
            self.session.stdin.write(agent_stdin_prefix())  # type: ignore[union-attr]
            self.info = self._hello(start_timeout)
        except BaseException:
            self.close()
            raise
        self.protocol = min(pickle.HIGHEST_PROTOCOL, self.info.pickle_protocol)

    # -- start -------------------------------------------------------------------------------------
    def _start_exec(self) -> Any:
        req = ExecTaskRequest(args=agent_command(self.python), env=["PYTHONUNBUFFERED=1"])
        try:
            return self.service.exec_task_streaming(self.container_id, req)
        except errors.CtrError as exc:
            if self.python in str(exc) and any(w in str(exc).lower() for w in ("not found", "no such file")):
                raise self._no_python() from None
            raise

    def _no_python(self, detail: str = "") -> NoPython:
        why = f" ({detail})" if detail else ""
        return NoPython(f"container {self.container_id} has no {self.python}{why}",
                        hint="use an image with Python 3.7 or newer, e.g. ctr_magic.debian_image.ensure_debian_image()")

    def _start_readers(self) -> None:
        threading.Thread(target=self._read_frames, name=f"pycell-{self.container_id}", daemon=True).start()
        if self.session.stderr is not None:
            threading.Thread(target=self._read_stderr, name=f"pycell-err-{self.container_id}", daemon=True).start()

    def _read_frames(self) -> None:
        try:
            while True:
                kind, payload = wire.read_frame(self.session.stdout)
                if kind is None:
                    break
                self._events.put(("frame", kind, payload))
        except (OSError, ValueError):
            log.debug("agent stdout of %s closed", self.container_id, exc_info=True)
        finally:
            self._ended.set()
            self._events.put(("eof", None, None))

    def _read_stderr(self) -> None:
        stream = self.session.stderr
        with contextlib.suppress(OSError, ValueError):
            while True:
                data = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
                if not data:
                    break
                self._stderr_tail = (self._stderr_tail + data)[-4096:]
                self._events.put(("stderr", data, None))

    def _hello(self, timeout: float) -> AgentInfo:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event, kind, payload = self._events.get(timeout=_POLL)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise errors.Unavailable(f"{self.python} in {self.container_id} did not start within "
                                             f"{timeout:.0f}s") from None
                continue
            if event == "eof":
                raise self._ended_early()
            if event == "frame" and kind == wire.HELLO:
                hello = json.loads(bytes(payload).decode())
                break
        version = tuple(int(v) for v in hello["version_info"])
        if version < MIN_PYTHON:
            raise self._no_python(f"it has Python {hello['python']}; %ctr py needs 3.7 or newer")
        libraries = {name: str(hello.get(name) or "") for name in ("numpy", "pandas", "pyarrow")}
        log.info("agent in %s: Python %s, pid %s, %s", self.container_id, hello["python"], hello["pid"], libraries)
        return AgentInfo(hello["python"], version, int(hello["pickle"]), int(hello["pid"]), libraries)

    def _exit_code(self) -> Optional[int]:
        try:
            return int(self.session.wait(timeout=5.0).exit_code)
        except errors.CtrError as exc:
            if self.python in str(exc) and "not found" in str(exc).lower():
                raise self._no_python() from None
            return None

    def _ended_early(self) -> errors.CtrError:
        code = self._exit_code()
        said = self._stderr_tail.decode("utf-8", "replace").strip().splitlines()
        if code in _EXIT_NO_COMMAND:
            return self._no_python()
        if said and "SyntaxError" in said[-1]:
            return self._no_python("it is too old to run the agent: " + said[-1])
        reason = said[-1] if said else f"exit code {code}"
        return AgentGone(f"{self.python} in {self.container_id} ended before it was ready: {reason}", exit_code=code)

    # -- state -------------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return not self._closed and not self._ended.is_set()

    def close(self) -> None:
        """Stop the agent (QUIT, then kill) and release the exec; its Python state is gone."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            if not self._ended.is_set():
                wire.FrameWriter(self.session.stdin).send(wire.QUIT)
        with contextlib.suppress(Exception):
            self.session.close()

    # -- cells -------------------------------------------------------------------------------------
    def encode_inputs(self, inputs: Mapping[str, Any], fmt: str) -> list[list[Any]]:
        """Every input as a value frame's parts; the first that cannot cross fails them all (nothing sent)."""
        frames = []
        for name, value in inputs.items():
            try:
                codec = wire.choose_codec(value, fmt, self.info.libraries, self._local)
                meta, parts = wire.encode(value, codec, self.protocol)
            except wire.CannotCross as exc:
                raise CannotCross(f"--in {name}: {exc}", hint=_format_hint(fmt)) from None
            frames.append(wire.value_parts(name, codec, meta, parts))
        return frames

    def run(self, code: str, *, inputs: Optional[Mapping[str, Any]] = None, outputs: Sequence[str] = (),
            fmt: str = "pickle", mode: str = "exec", stdout: Optional[Sink] = None,
            stderr: Optional[Sink] = None) -> dict[str, Any]:
        """Run *code* (``mode="eval"``: an expression, returned under the name ``""``) with *inputs*
        bound, and return the *outputs*. Output goes to *stdout* / *stderr* as it arrives.

        Ctrl-C raises KeyboardInterrupt inside the cell; what the cell started is killed, the agent
        and its state stay. An agent that does not stop within ``interrupt_grace`` seconds is killed.
        """
        if fmt not in wire.FORMATS:
            raise errors.InvalidArgument(f"--format {fmt!r} is not one of {', '.join(wire.FORMATS)}")
        if not self.alive:
            raise AgentGone(f"the Python agent in {self.container_id} has ended", exit_code=None)
        frames = self.encode_inputs(inputs or {}, fmt)
        request = {"code": code, "mode": mode, "inputs": list((inputs or {}).keys()), "outputs": list(outputs),
                   "format": fmt, "protocol": self.protocol, "peer": self._local}
        sinks = {wire.STDOUT: stdout or (lambda _b: None), wire.STDERR: stderr or (lambda _b: None)}
        collected: dict[str, Any] = {}
        state: dict[str, Any] = {"error": None, "done": False}
        writer = wire.FrameWriter(self.session.stdin)
        try:
            writer.send(wire.RUN, json.dumps(request).encode())
            for parts in frames:
                writer.send(wire.VALUE, *parts)
        except (OSError, ValueError):
            raise self._gone("while receiving the inputs") from None
        except KeyboardInterrupt:
            self.close()  # a frame was cut short: the stream cannot be trusted any more
            raise errors.Interrupted(f"interrupted while sending the inputs to {self.container_id}; its Python "
                                     "agent was stopped (its state is gone)") from None
        try:
            self._collect(sinks, fmt, collected, state, deadline=None)
        except KeyboardInterrupt:
            self._interrupt(sinks, fmt, collected, state)
        error = state["error"]
        if error is not None:
            raise self._remote_error(error, fmt)
        return collected

    def _interrupt(self, sinks: dict[bytes, Sink], fmt: str, collected: dict[str, Any],
                   state: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            wire.FrameWriter(self.session.stdin).send(wire.INTERRUPT)
        try:
            self._collect(sinks, fmt, collected, state, deadline=time.monotonic() + self.interrupt_grace)
        except (KeyboardInterrupt, AgentGone):
            state["done"] = False
        if not state["done"]:
            self.close()
            raise errors.Interrupted(f"interrupted: the cell in {self.container_id} did not stop; its Python "
                                     "agent was killed (its state is gone)")
        raise errors.Interrupted(f"interrupted: KeyboardInterrupt raised in the cell in {self.container_id}; "
                                 "what it started was killed, its Python state is kept")

    def _collect(self, sinks: dict[bytes, Sink], fmt: str, collected: dict[str, Any], state: dict[str, Any],
                 deadline: Optional[float]) -> None:
        while not state["done"]:
            try:
                event, kind, payload = self._events.get(timeout=_POLL)
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    return
                continue
            if event == "stderr":
                sinks[wire.STDERR](kind)
            elif event == "eof":
                raise self._gone("during the cell")
            elif kind in sinks:
                sinks[kind](bytes(payload))
            elif kind == wire.VALUE:
                name, codec, meta, data = wire.split_value(payload)
                try:
                    collected[name] = wire.decode(codec, meta, data, allow_pickle=fmt == "pickle")
                except Exception as exc:
                    what = f"--out {name}" if name else "the result"
                    state["error"] = {"phase": "decode", "name": name, "message": f"{what}: {exc}"}
            elif kind == wire.ERROR:
                state["error"] = state["error"] or json.loads(bytes(payload).decode())
            elif kind == wire.DONE:
                state["done"] = True

    def _gone(self, when: str) -> AgentGone:
        self._ended.wait(2.0)
        code = self._exit_code() if self._ended.is_set() else None
        self.close()
        said = self._stderr_tail.decode("utf-8", "replace").strip().splitlines()
        how = f"exit code {code}" if code is not None else "no exit code"
        tail = f": {said[-1]}" if said else ""
        return AgentGone(f"{self.python} in {self.container_id} ended {when} ({how}){tail}", exit_code=code)

    def _remote_error(self, error: dict[str, Any], fmt: str) -> errors.CtrError:
        phase, name, message = error.get("phase"), error.get("name", ""), error.get("message", "")
        if phase == "decode":
            return CannotCross(message, hint=_format_hint(fmt))
        if phase == "input":
            return CannotCross(f"--in {name} could not be loaded in {self.container_id}: {message}",
                               hint="send plain data (DataFrames, arrays, builtins) or install what it needs there")
        if phase == "output":
            if error.get("type") == "NameError":
                return errors.NotFound(f"--out {name}: {message}", hint="assign it in the cell")
            return CannotCross(f"--out {name} cannot come back: {message}", hint=_format_hint(fmt))
        return RemoteError(message, remote_type=str(error.get("type", "")),
                           remote_traceback=str(error.get("traceback", "")))


def _format_hint(fmt: str) -> str:
    if fmt == "pickle":
        return "send data it can pickle (DataFrames, arrays, builtins), not open files, lambdas or notebook functions"
    return "--format pickle sends any picklable value (and unpickles what comes back)"


__all__ = ["AgentGone", "AgentInfo", "CannotCross", "NoPython", "PythonAgent", "RemoteError", "local_libraries"]
