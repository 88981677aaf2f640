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

from ..types import LayerProgress

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


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _size(n: int) -> str:
    from .frames import human_size  # lazy: frames imports pandas

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
            return blob

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
    """A title and one bar per blob (layer, config, manifest), updated live."""

    def __init__(self, title: str) -> None:
        import ipywidgets as w
        from IPython.display import display

        self._w = w
        self.title = title
        self.tracker = _Tracker()
        self._rows: dict[str, tuple[Any, Any]] = {}
        self._header = w.HTML(value=f"<b>{_escape(title)}</b>")
        self._box = w.VBox([self._header])
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
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
            self._show(blob, bar, label)

    def _row(self, blob: _Blob) -> tuple[Any, Any]:
        row = self._rows.get(blob.digest)
        if row is None:
            w = self._w
            kind = "layer" if "layer" in blob.media_type else blob.media_type.rsplit(".", 1)[-1].split("+")[0]
            bar = w.IntProgress(
                min=0, max=max(blob.total, 1), description=_short(blob.digest), layout=w.Layout(width="55%")
            )
            bar.tooltip = f"{blob.digest} ({kind or 'blob'})"
            label = w.Label(value="")
            row = self._rows[blob.digest] = (bar, label)
            self._box.children = (*self._box.children, w.HBox([bar, label]))
        return row

    def _show(self, blob: _Blob, bar: Any, label: Any) -> None:
        total = max(blob.total, 1)
        bar.max = total
        if blob.state in FINISHED_STATES:
            bar.value = total
            bar.bar_style = "success"
            label.value = f"{blob.state} {_size(blob.total)}"
        elif blob.state == "error":
            bar.bar_style = "danger"
            label.value = "error"
        else:
            bar.value = min(blob.done, total)
            label.value = f"{blob.state} {_size(blob.done)} / {_size(blob.total)}"

    def finish(self, ok: bool = True) -> None:
        with self._lock:
            for digest, (bar, label) in self._rows.items():
                self._show(self.tracker.blobs[digest], bar, label)
            suffix = self.tracker.summary() if ok else "failed"
            self._header.value = f"<b>{_escape(self.title)}</b>: {_escape(suffix)}"


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
