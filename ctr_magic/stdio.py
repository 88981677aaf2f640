"""The contract's stdio adapters, shared by every backend.

What a caller may pass as an exec's stdin (bytes, str or a readable file) becomes chunks of
bytes (:func:`stdin_chunks`); what it passes as stdout/stderr (a binary or text writer) becomes a
sink for chunks (:func:`make_sink`, :class:`WriterSink`), text decoded as UTF-8 without breaking
a character split across chunks; :func:`caller_stdio` writes to this process's stdout/stderr.
"""

from __future__ import annotations

import codecs
import io
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any, Optional

from . import errors

log = logging.getLogger(__name__)

STDIN_CHUNK = 1 << 16
Sink = Callable[[memoryview], None]  # also given bytes


def is_binary_writer(writer: Any) -> bool:
    """True for byte streams (files opened 'wb', BytesIO, sys.stdout.buffer), False for text ones."""
    if isinstance(writer, (io.RawIOBase, io.BufferedIOBase)):
        return True
    if isinstance(writer, io.TextIOBase):
        return False
    try:
        writer.write(b"")
    except TypeError:
        return False
    return True


def make_sink(writer: Any, *, flush_each: bool = False) -> tuple[Sink, Callable[[], None]]:
    """A callable writing chunks to *writer* (decoding UTF-8 for text writers) and a finisher.

    With *flush_each* the writer is flushed after every chunk (a flush that fails is ignored:
    a closed stream should not stop the copy).
    """
    write, finish = _sink(writer)
    if not flush_each:
        return write, finish

    def write_and_flush(chunk: memoryview) -> None:
        write(chunk)
        try:
            _flush(writer)
        except Exception:
            log.debug("flush failed", exc_info=True)

    return write_and_flush, finish


def _flush(writer: Any) -> None:
    flush = getattr(writer, "flush", None)
    if flush is not None:
        flush()


def _sink(writer: Any) -> tuple[Sink, Callable[[], None]]:
    if is_binary_writer(writer):
        def write_bytes(chunk: memoryview) -> None:
            writer.write(chunk)

        return write_bytes, lambda: _flush(writer)

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write_text(chunk: memoryview) -> None:
        text = decoder.decode(chunk)
        if text:
            writer.write(text)

    def finish_text() -> None:
        tail = decoder.decode(b"", final=True)
        if tail:
            writer.write(tail)
        _flush(writer)

    return write_text, finish_text


def stdin_chunks(source: Any) -> Iterator[bytes]:
    """bytes / str / a readable file (binary or text) as chunks of bytes."""
    if source is None:
        return
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        for start in range(0, len(data), STDIN_CHUNK):
            yield data[start:start + STDIN_CHUNK]
        return
    if isinstance(source, str):
        yield from stdin_chunks(source.encode())
        return
    read = getattr(source, "read", None)
    if read is None:
        raise errors.InvalidArgument(f"stdin must be bytes, str or a readable file, not {type(source).__name__}")
    while True:
        chunk = read(STDIN_CHUNK)
        if not chunk:
            return
        yield chunk.encode() if isinstance(chunk, str) else bytes(chunk)


def check_stdin(source: Any) -> None:
    if source is None or isinstance(source, (bytes, bytearray, memoryview, str)) or hasattr(source, "read"):
        return
    raise errors.InvalidArgument(f"stdin must be bytes, str or a readable file, not {type(source).__name__}")


def caller_stdio() -> dict[str, Optional[Sink]]:
    """Sinks writing to this process's sys.stdout / sys.stderr (looked up now: IPython swaps them)."""
    out: dict[str, Optional[Sink]] = {}
    for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
        out[name] = make_sink(stream, flush_each=True)[0] if stream is not None else None
    return out


class WriterSink:
    """A caller's writer (or None: output dropped) as a sink object, flushed after every chunk."""

    def __init__(self, writer: Optional[Any]) -> None:
        self._write: Optional[Sink] = None
        self._finish: Optional[Callable[[], None]] = None
        if writer is not None:
            self._write, self._finish = make_sink(writer, flush_each=True)

    def __call__(self, data: bytes) -> None:
        if self._write is not None:
            self._write(data)  # type: ignore[arg-type]  (bytes: a writer may want bytes, not a view)

    def finish(self) -> None:
        if self._finish is not None:
            self._finish()


__all__ = ["STDIN_CHUNK", "Sink", "WriterSink", "caller_stdio", "check_stdin", "is_binary_writer", "make_sink",
           "stdin_chunks"]
