"""Timing helpers shared by every benchmark: measure both sides in one run, report ratios."""

from __future__ import annotations

import io
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional


class Discard(io.RawIOBase):
    """A binary writer that drops what it gets (the in-process /dev/null)."""

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return len(b)


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of *fn*."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class Comparison:
    """One benchmark: our timings next to a reference tool's, same machine, same run."""

    name: str
    ours: list[float]
    reference: list[float]
    reference_name: str
    unit: str = "s"
    target: Optional[float] = None  # the ratio we aim at (ours / reference), if any
    notes: list[str] = field(default_factory=list)
    higher_is_better: bool = False  # throughput-style numbers

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.reference)

    def row(self) -> str:
        def fmt(values: list[float]) -> str:
            p50 = statistics.median(values)
            p95 = sorted(values)[max(0, int(len(values) * 0.95) - 1)]
            return f"p50 {p50:.4g}{self.unit} p95 {p95:.4g}{self.unit} (n={len(values)})"

        verdict = ""
        if self.target is not None:
            ok = self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target
            verdict = f"  target {'≥' if self.higher_is_better else '≤'} {self.target}: {'met' if ok else 'MISSED'}"
        notes = "".join(f"\n  note: {note}" for note in self.notes)
        return (f"{self.name}\n  ctr-magic        {fmt(self.ours)}\n  {self.reference_name:<16} "
                f"{fmt(self.reference)}\n  ratio ours/ref   {self.ratio:.2f}{verdict}{notes}")


def time_call(fn: Callable[[], object], repeat: int, *, setup: Optional[Callable[[], object]] = None,
              warmup: int = 1) -> list[float]:
    """Wall-clock seconds of *fn* over *repeat* runs (setup runs untimed before each)."""
    for _ in range(warmup):
        if setup:
            setup()
        fn()
    out = []
    for _ in range(repeat):
        if setup:
            setup()
        out.append(timed(fn))
    return out


def run(argv: Sequence[str], *, stdout: Optional[int] = subprocess.DEVNULL) -> None:
    """Run a reference command; fail loudly if it fails (a failed run must not count as fast)."""
    subprocess.run(list(argv), check=True, stdout=stdout, stderr=subprocess.PIPE)


def interleave(
    ours: Callable[[], float], reference: Callable[[], float], repeat: int
) -> tuple[list[float], list[float]]:
    """Alternate the two sides so drift in machine load hits both equally."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeat):
        a.append(ours())
        b.append(reference())
    return a, b


def report(results: Sequence[Comparison]) -> str:
    return "\n\n".join(r.row() for r in results)
