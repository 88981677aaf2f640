"""A stand-in for a notebook cell's output streams, shared by the magic tests."""

from __future__ import annotations

import io
from collections.abc import Callable


class Tee(io.TextIOBase):
    """Stands in for the cell's stdout/stderr: records writes and can react to them."""

    def __init__(self, on_write: Callable[[str], None] | None = None) -> None:
        self.parts: list[str] = []
        self.on_write = on_write

    def write(self, text: str) -> int:
        self.parts.append(text)
        if self.on_write is not None:
            self.on_write(self.text)
        return len(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)


__all__ = ["Tee"]
