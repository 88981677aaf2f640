"""The agent: runs inside the container under its own ``python3`` and executes cells.

It is not imported by the kernel: its source (with :mod:`wire`) is sent over the exec's stdin
and run by the bootstrap in :mod:`ctr_magic.pycell.bootstrap`. So: standard library only,
Python 3.7 syntax, and nothing from ``ctr_magic`` except the ``wire`` module the bootstrap
installs as ``ctr_magic_wire``.

The exec's stdout carries frames only. File descriptors 1 and 2 are pipes read by two threads
that turn whatever the cell (or a subprocess of it) writes into STDOUT/STDERR frames, so output
reaches the notebook live and in order with the result. A reader thread takes frames from stdin:
RUN and its VALUE frames go to the main thread, which executes the cell in one namespace that
lives as long as the agent; INTERRUPT raises KeyboardInterrupt in the main thread while a cell
runs (and is ignored otherwise).
"""

import json
import linecache
import os
import pickle
import queue
import select
import signal
import sys
import threading
import time
import traceback

wire = sys.modules["ctr_magic_wire"]


def _version(name):
    try:
        from importlib import metadata

        return metadata.version(name)
    except Exception:
        import importlib.util

        return "?" if importlib.util.find_spec(name) is not None else ""


def _usable(name):
    """The version of *name* when it is installed *and* imports (pyarrow refuses too old a numpy)."""
    version = _version(name)
    if not version:
        return ""
    try:
        __import__(name)
    except Exception:
        return ""
    return version


class OutputPump:
    """Turns what is written to one file descriptor into frames of one kind."""

    def __init__(self, fd, kind, writer):
        self.kind = kind
        self.writer = writer
        self.lock = threading.Lock()
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, fd)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.read_fd = read_fd
        threading.Thread(target=self._run, daemon=True).start()

    def _read_some(self):
        try:
            data = os.read(self.read_fd, 65536)
        except BlockingIOError:
            return False
        if data:
            self.writer.send(self.kind, data)
        return bool(data)

    def _run(self):
        while True:
            select.select([self.read_fd], [], [])
            with self.lock:
                self._read_some()

    def drain(self):
        """Send everything written so far (called after the cell's own writes were flushed)."""
        with self.lock:
            while self._read_some():
                pass


class Agent:
    def __init__(self, proto_in, writer):
        self.proto_in = proto_in
        self.writer = writer
        self.inbox = queue.Queue()
        self.state_lock = threading.Lock()
        self.running = False
        self.main_thread = threading.main_thread().ident
        self.namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        self.cells = 0

    # -- frames from the kernel ------------------------------------------------------------------
    def read_loop(self):
        while True:
            kind, payload = wire.read_frame(self.proto_in)
            if kind is None or kind == wire.QUIT:
                self.inbox.put((wire.QUIT, None))
                return
            if kind == wire.INTERRUPT:
                with self.state_lock:
                    if self.running:
                        signal.pthread_kill(self.main_thread, signal.SIGINT)
                        cell = self.cells
                        threading.Timer(STUCK_AFTER, self.unstick, args=(cell,)).start()
                continue
            self.inbox.put((kind, payload))

    def unstick(self, cell):
        """The interrupted cell still runs (blocked in os.system, say): end what it started."""
        with self.state_lock:
            if self.running and self.cells == cell:
                kill_descendants()
                signal.pthread_kill(self.main_thread, signal.SIGINT)

    def next_frame(self):
        while True:
            try:
                return self.inbox.get()
            except KeyboardInterrupt:  # an interrupt that came after its cell finished
                continue

    # -- cells -----------------------------------------------------------------------------------
    def serve(self, pumps):
        while True:
            try:
                kind, payload = self.next_frame()
                if kind == wire.QUIT:
                    return
                if kind != wire.RUN:
                    continue
                request = json.loads(bytes(payload).decode())
                values = []
                for _ in request["inputs"]:
                    kind, payload = self.next_frame()
                    if kind == wire.QUIT:
                        return
                    values.append(payload)
                self.run(request, values, pumps)
            except KeyboardInterrupt:
                continue

    def error(self, phase, exc, name="", tb=None):
        lines = traceback.format_exception_only(type(exc), exc)
        last = lines[-1].strip() if lines else type(exc).__name__
        if isinstance(exc, SyntaxError) and exc.lineno:
            last += " (line %d)" % exc.lineno
        full = "".join(traceback.format_exception(type(exc), exc, tb)) if tb is not None else "".join(lines)
        self.writer.send_json(wire.ERROR, {"phase": phase, "name": name, "type": type(exc).__name__,
                                           "message": last, "traceback": full})

    def run(self, request, values, pumps):
        peer = request.get("peer") or {}
        fmt = request.get("format", "pickle")
        protocol = min(int(request.get("protocol", 2)), pickle.HIGHEST_PROTOCOL)
        for payload in values:
            name, codec, meta, data = wire.split_value(payload)
            try:
                self.namespace[name] = wire.decode(codec, meta, data)
            except Exception as exc:
                self.error("input", exc, name)
                return self.finish(pumps, interrupted=False)
        self.cells += 1
        filename = "<cell %d>" % self.cells
        source = request["code"]
        mode = request.get("mode", "exec")
        interrupted = False
        result = None
        try:
            code = compile(source, filename, mode)
        except SyntaxError as exc:
            self.error("compile", exc)
            return self.finish(pumps, interrupted=False)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            with self.state_lock:
                self.running = True
            try:
                if mode == "eval":
                    result = eval(code, self.namespace)
                else:
                    exec(code, self.namespace)
            finally:
                with self.state_lock:
                    self.running = False
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            if isinstance(exc, SystemExit):
                interrupted = False
            tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
            self.error("run", exc, tb=tb)
            return self.finish(pumps, interrupted=interrupted)
        outputs = [(name, self.namespace.get(name, _MISSING)) for name in request.get("outputs", [])]
        if mode == "eval":
            outputs = [("", result)]
        self.flush(pumps)
        for name, value in outputs:
            if value is _MISSING:
                self.error("output", NameError("name %r is not defined in the container after the cell" % name),
                           name)
                return self.finish(pumps, interrupted=False)
            try:
                codec = wire.choose_codec(value, fmt, peer, LOCAL)
                meta, parts = wire.encode(value, codec, protocol)
            except Exception as exc:
                self.error("output", exc, name)
                return self.finish(pumps, interrupted=False)
            self.writer.send(wire.VALUE, *wire.value_parts(name, codec, meta, parts))
        return self.finish(pumps, interrupted=False)

    def flush(self, pumps):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        for pump in pumps:
            pump.drain()

    def finish(self, pumps, interrupted):
        if interrupted:
            kill_descendants()
        self.flush(pumps)
        self.writer.send_json(wire.DONE, {"interrupted": interrupted})


_MISSING = object()
LOCAL = {}
#: Seconds after an interrupt before the processes an unresponsive cell started are killed.
STUCK_AFTER = 2.0


def kill_descendants():
    """SIGKILL every process below this one (what an interrupted cell started)."""
    me = os.getpid()
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    todo = list(children.get(me, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for _ in range(100):  # reap our own children, so no zombie stays listed
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)


def main():
    import io

    proto_in = open(os.dup(0), "rb", buffering=1 << 16)  # fd 0 itself becomes /dev/null below
    signal.signal(signal.SIGINT, signal.default_int_handler)
    writer = wire.FrameWriter(os.fdopen(os.dup(1), "wb", buffering=0))
    pumps = [OutputPump(1, wire.STDOUT, writer), OutputPump(2, wire.STDERR, writer)]
    # Whole lines reach the notebook as they are printed (flush=True sends a partial one).
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="replace",
                                  line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="replace",
                                  line_buffering=True)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the cell cannot read the protocol: its stdin is empty
    os.close(devnull)
    sys.stdin = open(os.devnull)
    LOCAL.update({"numpy": _version("numpy"), "pandas": _version("pandas"), "pyarrow": _usable("pyarrow")})
    agent = Agent(proto_in, writer)
    writer.send_json(wire.HELLO, {"python": sys.version.split()[0], "version_info": list(sys.version_info[:3]),
                                  "pickle": pickle.HIGHEST_PROTOCOL, "pid": os.getpid(), **LOCAL})
    threading.Thread(target=agent.read_loop, daemon=True).start()
    try:
        agent.serve(pumps)
    finally:
        agent.flush(pumps)
        os._exit(0)
