"""The one error a failing build step raises: ``step 4/9 `RUN make` exited with code 2``."""

from __future__ import annotations

from ..errors import CtrError


class StepFailed(CtrError):
    """A RUN step exited non-zero; ``tail`` holds its last output lines."""

    def __init__(self, number: int, total: int, text: str, exit_code: int, tail: list[str]) -> None:
        super().__init__(f"step {number}/{total} `{text}` exited with code {exit_code}")
        self.number = number
        self.exit_code = exit_code
        self.tail = tail


__all__ = ["StepFailed"]
