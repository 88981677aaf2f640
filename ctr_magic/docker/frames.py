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
_PIECE = 256 * 1024  # a large frame is handed on in pieces, so memory stays flat


def iter_frames(recv: Callable[[int], bytes], *, multiplexed: bool) -> Iterator[tuple[int, bytes]]:
    """``(stream, data)`` pieces until the end of the stream.

    *recv(n)* returns up to n bytes (``b""`` at the end). If a header is not a valid frame header
    (a server that sends a raw stream without saying so), the rest is passed on as stdout.
    """
    if not multiplexed:
        yield from _raw(recv, b"")
        return
    while True:
        header = _read_exact(recv, HEADER_SIZE)
        if not header:
            return
        if len(header) < HEADER_SIZE or header[0] > SYSTEMERR or header[1:4] != b"\0\0\0":
            log.warning("stream is not multiplexed as announced; passing it on as stdout")
            yield from _raw(recv, header)
            return
        stream = header[0]
        left = int.from_bytes(header[4:8], "big")
        while left:
            data = recv(min(left, _PIECE))
            if not data:
                return
            left -= len(data)
            yield stream, data


def _raw(recv: Callable[[int], bytes], first: bytes) -> Iterator[tuple[int, bytes]]:
    if first:
        yield STDOUT, first
    while True:
        data = recv(_PIECE)
        if not data:
            return
        yield STDOUT, data


def _read_exact(recv: Callable[[int], bytes], n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = recv(n - len(out))
        if not data:
            break
        out += data
    return out


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
