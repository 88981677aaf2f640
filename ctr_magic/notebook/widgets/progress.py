"""Progress displays for pulls and pushes: per-layer bars (ipywidgets) or one text line.

``progress_display(mode, title, shell)`` returns a callable taking
:class:`~ctr_magic.types.LayerProgress` events (from any thread) with a ``finish()``.
ipywidgets is imported only when bars are actually shown.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ...types import LayerProgress

FINISHED_STATES = frozenset({"done", "exists", "unpacked"})
_TEXT_INTERVAL = 0.25  # seconds between text refreshes
_WIDGET_INTERVAL = 0.1


class ProgressDisplay(Protocol):
    def __call__(self, event: LayerProgress) -> None: ...
    def finish(self, ok: bool = True) -> None: ...


@dataclass
class _Blob:
    digest: str
    media_type: str = ""
    done: int = 0
    total: int = 0
    state: str = "waiting"
    started: float = 0.0  # monotonic time of the first event with bytes done

    def rate(self, now: float) -> float:
        """Bytes per second so far (0 until a measurable time has passed)."""
        elapsed = now - self.started if self.started else 0.0
        return self.done / elapsed if elapsed > 0.05 else 0.0

    def eta(self, now: float) -> str:
        rate = self.rate(now)
        if rate <= 0 or self.total <= self.done:
            return ""
        return f"{_duration((self.total - self.done) / rate)} left"


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _duration(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


def _speed(size: int, seconds: float) -> str:
    return f"{_size(int(size / seconds))}/s" if seconds > 0.001 else ""


def _size(n: int) -> str:
    from ..frames import human_size  # lazy: frames imports pandas

    return human_size(n)


class _Tracker:
    """Thread-safe per-blob state shared by the displays."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.blobs: dict[str, _Blob] = {}

    def update(self, event: LayerProgress) -> _Blob:
        with self.lock:
            blob = self.blobs.get(event.digest)
            if blob is None:
                blob = self.blobs[event.digest] = _Blob(event.digest, event.media_type)
            blob.done = max(event.done, 0)
            blob.total = max(event.total, blob.total, 0)
            blob.state = event.state
            if not blob.started and blob.state not in FINISHED_STATES:
                blob.started = time.monotonic()
            return blob

    def totals(self) -> tuple[int, int]:
        """(bytes done, bytes in all) over every blob."""
        with self.lock:
            blobs = list(self.blobs.values())
        done = sum(b.total if b.state in FINISHED_STATES else b.done for b in blobs)
        return done, sum(b.total for b in blobs)

    def summary(self) -> str:
        with self.lock:
            blobs = list(self.blobs.values())
        finished = sum(1 for b in blobs if b.state in FINISHED_STATES)
        done = sum(b.total if b.state in FINISHED_STATES else b.done for b in blobs)
        total = sum(b.total for b in blobs)
        return f"{finished}/{len(blobs)} blobs, {_size(done)} of {_size(total)}"


class NullProgress:
    def __call__(self, event: LayerProgress) -> None:
        pass

    def finish(self, ok: bool = True) -> None:
        pass


class TextProgress:
    """One line on stderr, rewritten in place with ``\\r`` where that works (a terminal, a notebook);
    elsewhere (a log file, a pipe) only the final line is written."""

    def __init__(self, title: str, stream: Any = None, *, live: bool = True) -> None:
        self.title = title
        self.stream = stream
        self.live = live
        self.tracker = _Tracker()
        self._last = 0.0
        self._written = False
        self._lock = threading.Lock()

    def _out(self) -> Any:
        return self.stream if self.stream is not None else sys.stderr

    def __call__(self, event: LayerProgress) -> None:
        self.tracker.update(event)
        now = time.monotonic()
        if not self.live or now - self._last < _TEXT_INTERVAL:
            return
        with self._lock:
            self._last = now
            self._write(final=False)

    def _write(self, *, final: bool) -> None:
        out = self._out()
        out.write(f"\r{self.title}: {self.tracker.summary()}" + ("\n" if final else ""))
        out.flush()
        self._written = True

    def finish(self, ok: bool = True) -> None:
        with self._lock:
            if self.tracker.blobs or self._written:
                self._write(final=True)


class WidgetProgress:
    """A title and one bar per blob (layer, config, manifest), updated live with speed and time left.

    When the transfer ends the display collapses to one summary line (ref, digest, size, time,
    speed) with the bars kept behind a "details" toggle; a failure marks the failing blob red.
    """

    def __init__(self, title: str) -> None:
        import ipywidgets as w
        from IPython.display import display

        self._w = w
        self.title = title
        self.tracker = _Tracker()
        self._rows: dict[str, tuple[Any, Any]] = {}
        self._header = w.HTML(value=f"<b>{_escape(title)}</b>")
        self._bars = w.VBox([])
        self._bars.add_class("ctr-progress-bars")
        self._box = w.VBox([self._header, self._bars])
        self._box.add_class("ctr-progress")
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._started = time.monotonic()
        self._result: dict[str, Any] = {}
        self.summary = ""
        self._display = _PlainText(self._box, title)
        display(self._display)

    def __call__(self, event: LayerProgress) -> None:
        blob = self.tracker.update(event)
        now = time.monotonic()
        with self._lock:
            if event.state not in FINISHED_STATES and now - self._last.get(blob.digest, 0.0) < _WIDGET_INTERVAL:
                return
            self._last[blob.digest] = now
            bar, label = self._row(blob)
            self._show(blob, bar, label, now)

    def describe(self, *, ref: str = "", digest: str = "", size: int = 0) -> None:
        """What was transferred, for the summary line (the pull knows it only at the end)."""
        self._result = {"ref": ref, "digest": digest, "size": size}

    def _row(self, blob: _Blob) -> tuple[Any, Any]:
        row = self._rows.get(blob.digest)
        if row is None:
            w = self._w
            kind = "layer" if "layer" in blob.media_type else blob.media_type.rsplit(".", 1)[-1].split("+")[0]
            bar = w.IntProgress(
                min=0, max=max(blob.total, 1), description=_short(blob.digest), layout=w.Layout(width="55%")
            )
            bar.tooltip = f"{blob.digest} ({kind or 'blob'})"
            bar.add_class("ctr-progress-bar")
            label = w.Label(value="")
            row = self._rows[blob.digest] = (bar, label)
            self._bars.children = (*self._bars.children, w.HBox([bar, label]))
        return row

    def _show(self, blob: _Blob, bar: Any, label: Any, now: float) -> None:
        total = max(blob.total, 1)
        bar.max = total
        if blob.state in FINISHED_STATES:
            bar.value = total
            bar.bar_style = "success"
            label.value = f"{blob.state} {_size(blob.total)}"
        elif blob.state == "error":
            bar.bar_style = "danger"
            bar.add_class("ctr-progress-failed")
            label.value = "failed"
        else:
            bar.value = min(blob.done, total)
            extras = [x for x in (_speed(blob.done, now - blob.started) if blob.started else "", blob.eta(now)) if x]
            label.value = f"{blob.state} {_size(blob.done)} / {_size(blob.total)}" + "".join(f" · {x}" for x in extras)

    def finish(self, ok: bool = True) -> None:
        with self._lock:
            now = time.monotonic()
            for digest, (bar, label) in self._rows.items():
                blob = self.tracker.blobs[digest]
                if not ok and blob.state not in FINISHED_STATES:
                    blob.state = "error"  # where the transfer stopped
                self._show(blob, bar, label, now)
            if not ok:
                self._header.value = f"<b>{_escape(self.title)}</b>: failed"
                self._header.add_class("ctr-progress-failed")
                return
            self.summary = self._summary(now - self._started)
            self._collapse()

    def _summary(self, elapsed: float) -> str:
        done, total = self.tracker.totals()
        size = self._result.get("size") or total
        digest = str(self._result.get("digest") or "")
        parts = [self._result.get("ref") or self.title]
        if digest:
            parts.append(_short_digest(digest))
        parts += [_size(size), f"in {_duration(elapsed)}"]
        fetched = done if done else size
        speed = _speed(fetched, elapsed)
        return " ".join(str(p) for p in parts) + (f" ({speed})" if speed else "")

    def _collapse(self) -> None:
        w = self._w
        self._header.value = f'<span class="ctr-progress-summary">✔ {_escape(self.summary)}</span>'
        toggle = w.ToggleButton(value=False, description="details", tooltip="show the bars of every blob",
                                layout=w.Layout(width="auto"))
        self._bars.layout.display = "none"
        toggle.observe(lambda change: setattr(self._bars.layout, "display", None if change["new"] else "none"),
                       names="value")
        self._box.children = (w.HBox([self._header, toggle]), self._bars)


def _short_digest(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest


class _PlainText:
    """Displays a widget with a fixed text/plain fallback (saved notebooks, nbval comparisons)."""

    def __init__(self, widget: Any, text: str) -> None:
        self.widget = widget
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        data = dict(self.widget._repr_mimebundle_())
        data["text/plain"] = self.text
        return data


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def in_kernel(shell: Any) -> bool:
    """True inside a Jupyter kernel (a frontend can draw widgets), False in a terminal IPython."""
    return shell is not None and getattr(shell, "kernel", None) is not None


def progress_display(mode: str, title: str, shell: Any = None) -> ProgressDisplay:
    """``auto``: bars in a kernel when ipywidgets is installed, else text; ``widgets``/``text``/``none``."""
    if mode == "none":
        return NullProgress()
    if mode == "widgets" or (mode == "auto" and in_kernel(shell)):
        try:
            return WidgetProgress(title)
        except ImportError:
            pass
    stderr_is_tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
    return TextProgress(title, live=in_kernel(shell) or stderr_is_tty)


__all__ = ["NullProgress", "ProgressDisplay", "TextProgress", "WidgetProgress", "in_kernel", "progress_display"]
