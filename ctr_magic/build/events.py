"""What a build tells its caller as it goes: steps starting and finishing, and RUN output."""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

STARTED = "started"
CACHED = "cached"
DONE = "done"
FAILED = "failed"

#: Lines of a failed step's output kept for its error message.
TAIL_LINES = 12


@dataclass(frozen=True)
class StepEvent:
    """Step *number* of *total* (1-based, counted as ``docker build`` counts them) changed *status*."""

    number: int
    total: int
    text: str
    status: str
    seconds: float = 0.0

    def line(self) -> str:
        head = f"step {self.number}/{self.total} {self.text}"
        if self.status == CACHED:
            return f"{head}  CACHED"
        if self.status == DONE:
            return f"{head}  {self.seconds:.1f}s"
        return head


@dataclass
class BuildOptions:
    """How to build: ``tags`` (first is the main name), ``build_args``, ``no_cache``, ``net`` (RUN gets
    a network), ``target`` (the last stage to build), ``platform``; callbacks for step events and for
    RUN output (``on_output("stdout" | "stderr", bytes)``)."""

    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    no_cache: bool = False
    net: bool = False
    target: str = ""
    platform: str = ""
    on_step: Optional[Callable[[StepEvent], None]] = None
    on_output: Optional[Callable[[str, bytes], None]] = None


@dataclass
class BuildResult:
    """What was built: the image's names, its digest (manifest, or Docker's image id), and the steps."""

    names: list[str]
    digest: str
    steps: list[StepEvent] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def cached_steps(self) -> int:
        return sum(1 for s in self.steps if s.status == CACHED)


class OutputTail:
    """The last lines of a step's output (both streams), for the one-line failure message."""

    def __init__(self, limit: int = TAIL_LINES) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=limit)
        self._partial = ""

    def feed(self, data: bytes) -> None:
        text = self._partial + data.decode("utf-8", "replace")
        *lines, self._partial = text.split("\n")
        self._lines.extend(lines)

    def lines(self) -> list[str]:
        return [*self._lines, *([self._partial] if self._partial else [])][-self._lines.maxlen:]  # type: ignore[misc]


class Reporter:
    """Sends events to the caller's callbacks and keeps what the result and errors need."""

    def __init__(self, options: BuildOptions, total: int) -> None:
        self.options = options
        self.total = total
        self.steps: list[StepEvent] = []
        self.tail = OutputTail()

    def step(self, number: int, text: str, status: str, seconds: float = 0.0) -> StepEvent:
        event = StepEvent(number, self.total, text, status, seconds)
        if status in (CACHED, DONE, FAILED):
            self.steps.append(event)
        if status == STARTED:
            self.tail = OutputTail()
        if self.options.on_step is not None:
            self.options.on_step(event)
        return event

    def output(self, stream: str, data: bytes) -> None:
        self.tail.feed(data)
        if self.options.on_output is not None:
            self.options.on_output(stream, data)


__all__ = ["CACHED", "DONE", "FAILED", "STARTED", "BuildOptions", "BuildResult", "OutputTail", "Reporter",
           "StepEvent"]
