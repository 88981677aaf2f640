"""Moving process output into the cell as it arrives.

Output is written by the cell's own thread (so it lands in the right cell and Ctrl-C reaches
us): sources with a file descriptor are multiplexed with ``selectors``; other sources are read
by helper threads that hand chunks over through a queue.
"""

from __future__ import annotations

import codecs
import os
import queue
import selectors
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, Optional

_CHUNK = 64 * 1024
_POLL = 0.2
Sink = Callable[[bytes], None]


class TextSink:
    """Decodes UTF-8 incrementally (characters split across chunks survive) and writes to a stream."""

    def __init__(self, stream_name: str) -> None:
        self.stream_name = stream_name
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def _stream(self) -> Any:
        return getattr(sys, self.stream_name)

    def __call__(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            stream = self._stream()
            stream.write(text)
            stream.flush()

    def close(self) -> None:
        text = self._decoder.decode(b"", final=True)
        if text:
            self._stream().write(text)
        self._stream().flush()


class Collector:
    """Keeps every chunk (``-o NAME``)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        self.chunks.append(data)

    def value(self, binary: bool) -> bytes | str:
        data = b"".join(self.chunks)
        return data if binary else data.decode("utf-8", errors="replace")


def _fileno(source: Any) -> Optional[int]:
    try:
        return int(source.fileno())
    except (AttributeError, OSError, ValueError, TypeError):
        return None


def _read_chunk(source: Any) -> bytes:
    for name in ("read1", "read"):
        method = getattr(source, name, None)
        if method is not None:
            return method(_CHUNK) or b""
    raise TypeError(f"cannot read from {type(source).__name__}")


def pump(sources: dict[str, Any], sinks: dict[str, Sink]) -> None:
    """Copy every source (file-like, or an iterable of bytes) to its sink until all reach EOF.

    Runs in the calling thread; a KeyboardInterrupt propagates (the caller cleans up).
    """
    by_fd: dict[int, str] = {}
    others: dict[str, Any] = {}
    for name, source in sources.items():
        if source is None:
            continue
        fd = _fileno(source) if not isinstance(source, Iterable) or hasattr(source, "read") else None
        if fd is not None:
            by_fd[fd] = name
        else:
            others[name] = source
    chunks: queue.Queue[tuple[str, Optional[bytes], Optional[BaseException]]] = queue.Queue()
    threads = [_start_reader(name, source, chunks) for name, source in others.items()]
    open_threads = len(threads)
    with selectors.DefaultSelector() as selector:
        for fd in by_fd:
            selector.register(fd, selectors.EVENT_READ)
        while by_fd or open_threads:
            if by_fd:
                # A finite timeout: the thread returns to Python often, so Ctrl-C is seen at once.
                for key, _ in selector.select(timeout=0.05 if open_threads else _POLL):
                    data = os.read(key.fd, _CHUNK)
                    if data:
                        sinks[by_fd[key.fd]](data)
                    else:
                        selector.unregister(key.fd)
                        del by_fd[key.fd]
            while open_threads:
                try:
                    name, data, error = chunks.get(timeout=0.05 if not by_fd else 0)
                except queue.Empty:
                    break
                if error is not None:
                    raise error
                if data is None:
                    open_threads -= 1
                else:
                    sinks[name](data)


def _start_reader(
    name: str, source: Any, out: queue.Queue[tuple[str, Optional[bytes], Optional[BaseException]]]
) -> threading.Thread:
    def run() -> None:
        try:
            if hasattr(source, "read"):
                while True:
                    data = _read_chunk(source)
                    if not data:
                        break
                    out.put((name, data, None))
            else:
                for data in source:
                    if data:
                        out.put((name, bytes(data), None))
        except BaseException as exc:  # handed to the cell's thread, which re-raises it
            out.put((name, None, exc))
            return
        out.put((name, None, None))

    thread = threading.Thread(target=run, name=f"ctr-magic-{name}", daemon=True)
    thread.start()
    return thread
