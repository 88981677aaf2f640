"""The Engine API's multiplexed stream: 8-byte frame headers that keep stdout and stderr apart.

Header: ``[stream, 0, 0, 0, size (4 bytes, big-endian)]`` with stream 1 = stdout, 2 = stderr
(0 = stdin, 3 = an error from the daemon). A terminal (TTY) stream is not multiplexed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
HEADER_SIZE = 8
_READ = 128 * 1024  # bytes asked of the socket at once
_PIECE = 256 * 1024  # a large frame is handed on in pieces, so memory stays flat


def iter_frames(recv: Callable[[int], bytes], *, multiplexed: bool) -> Iterator[tuple[int, bytes]]:
    """``(stream, data)`` pieces until the end of the stream.

    *recv(n)* returns up to n bytes (``b""`` at the end). Reads are large and frames are cut out of
    the buffer, so a stream of many small frames costs few system calls. If a header is not a
    valid frame header (a server that sends a raw stream without saying so), the rest is passed
    on as stdout.
    """
    if not multiplexed:
        yield from _raw(recv, b"")
        return
    buf = b""
    pos = 0
    while True:
        if len(buf) - pos < HEADER_SIZE:
            buf = buf[pos:]
            pos = 0
            while len(buf) < HEADER_SIZE:
                data = recv(_READ)
                if not data:
                    if buf:
                        log.debug("stream ended inside a frame header (%d bytes)", len(buf))
                    return
                buf += data
        header = buf[pos:pos + HEADER_SIZE]
        if header[0] > SYSTEMERR or header[1:4] != b"\0\0\0":
            log.warning("stream is not multiplexed as announced; passing it on as stdout")
            yield from _raw(recv, buf[pos:])
            return
        stream = header[0]
        left = int.from_bytes(header[4:8], "big")
        pos += HEADER_SIZE
        while left:
            if pos >= len(buf):
                buf = recv(min(max(left, _READ), _PIECE))
                pos = 0
                if not buf:
                    return
            take = min(left, len(buf) - pos)
            yield stream, buf[pos:pos + take]
            pos += take
            left -= take


def _raw(recv: Callable[[int], bytes], first: bytes) -> Iterator[tuple[int, bytes]]:
    if first:
        yield STDOUT, first
    while True:
        data = recv(_PIECE)
        if not data:
            return
        yield STDOUT, data


class ChunkReader:
    """``recv(n)`` over an iterator of byte chunks (an httpx streamed body)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def recv(self, n: int) -> bytes:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return b""
        data, self._buf = self._buf[:n], self._buf[n:]
        return data


__all__ = ["HEADER_SIZE", "STDERR", "STDIN", "STDOUT", "SYSTEMERR", "ChunkReader", "iter_frames"]
