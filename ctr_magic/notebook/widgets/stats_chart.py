"""``%ctr stats --watch``: a small live chart of CPU % and memory per container.

Plain ipywidgets + matplotlib (Agg, no pyplot state): each refresh renders a PNG into an HTML
widget as an ``<img>`` with alt text that says what the chart shows, so it renders in stock
JupyterLab / Notebook 7 and reads without the picture too.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections import deque
from typing import Any, Optional

from ... import features
from ...errors import CtrError, NotSupported
from ...monitoring import StatsSample, cpu_percent
from ..stats import row as stats_row
from ..stats import running_ids, stats_frame
from .lifecycle import Displays, close_widgets

WINDOW = 60  # points kept per container


def _figure_module() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise NotSupported("%ctr stats --watch draws with matplotlib, which is not installed",
                           hint="pip install matplotlib (or use %ctr stats without --watch)") from None
    return Figure


class StatsChart:
    """Samples the containers every ``interval`` seconds and redraws; ``run()`` until interrupted."""

    def __init__(self, service: Any, ids: tuple[str, ...] = (), interval: float = 1.0) -> None:
        import ipywidgets as w

        self._figure_class = _figure_module()
        self.service = service
        self.stats = features.require(service, features.Stats, "%ctr stats --watch")
        self.ids = tuple(ids) or tuple(running_ids(service))
        self.interval = interval
        self.started = time.monotonic()
        self.series: dict[str, deque[tuple[float, float, int]]] = {cid: deque(maxlen=WINDOW) for cid in self.ids}
        self._last: dict[str, StatsSample] = {}
        self.samples = 0
        self.chart = w.HTML()
        self.chart.add_class("ctr-stats-chart")
        self.caption = w.HTML()
        self.widget = w.VBox([self.chart, self.caption])
        self.widget.add_class("ctr-stats")
        self._widgets = [self.chart, self.caption, self.widget]
        self._displays = Displays()

    def step(self) -> None:
        """Take one sample of every container and redraw (CPU % needs the previous sample)."""
        now = time.monotonic() - self.started
        for cid in self.ids:
            try:
                sample = self.stats.container_stats(cid)
            except CtrError:
                continue  # stopped: its line just ends
            previous = self._last.get(cid)
            self._last[cid] = sample
            if previous is not None:
                self.series[cid].append((now, cpu_percent(previous, sample), sample.memory_usage))
        self.samples += 1
        self._draw()

    def points(self) -> int:
        return sum(len(s) for s in self.series.values())

    def alt_text(self) -> str:
        parts = []
        for cid, points in self.series.items():
            if points:
                _t, cpu, memory = points[-1]
                parts.append(f"{cid}: CPU {cpu:.0f}%, memory {memory / 2**20:.1f} MiB")
        latest = "; ".join(parts) or "no data yet"
        return (f"Line chart of CPU % and memory over the last {self.points()} samples "
                f"of {', '.join(self.ids) or 'no containers'}. Latest: {latest}.")

    def _draw(self) -> None:
        figure = self._figure_class(figsize=(7, 2.6), dpi=80)
        cpu_axes, memory_axes = figure.subplots(1, 2)
        for cid, points in self.series.items():
            xs = [p[0] for p in points]
            cpu_axes.plot(xs, [p[1] for p in points], label=cid)
            memory_axes.plot(xs, [p[2] / 2**20 for p in points], label=cid)
        cpu_axes.set_title("CPU %")
        memory_axes.set_title("memory (MiB)")
        for axes in (cpu_axes, memory_axes):
            axes.set_xlabel("seconds")
        if self.series:
            cpu_axes.legend(loc="upper left", fontsize="small")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        encoded = base64.b64encode(buffer.getvalue()).decode()
        alt = html.escape(self.alt_text(), quote=True)
        self.chart.value = (f'<img src="data:image/png;base64,{encoded}" alt="{alt}" '
                            f'data-points="{self.points()}" style="max-width:100%">')
        self.caption.value = f"<small>{html.escape(self.alt_text())}</small>"

    def run(self, count: Optional[int] = None) -> Any:
        """Sample until *count* samples were taken or the stop button is pressed; returns the last frame."""
        try:
            while count is None or self.samples < count:
                self.step()
                if count is not None and self.samples >= count:
                    break
                time.sleep(self.interval)  # the sampling period, not a synchronisation
        except KeyboardInterrupt:
            pass
        self._displays.update(self._repr_mimebundle_())  # the saved output keeps the last picture
        return self.frame()

    def frame(self) -> Any:
        """The latest values as the ``%ctr stats`` DataFrame."""
        rows = []
        for cid, sample in self._last.items():
            points = self.series.get(cid)
            data = stats_row(None, sample)
            data["cpu_percent"] = points[-1][1] if points else None
            rows.append(data)
        return stats_frame(rows)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        live = self.widget._repr_mimebundle_ if self.widget.comm is not None else None
        data = dict(live() or {}) if live is not None else {}  # a closed view renders statically
        data["text/plain"] = self.alt_text()
        data["text/html"] = self.chart.value or html.escape(self.alt_text())
        return data

    def _ipython_display_(self) -> None:
        self._displays.show(self._repr_mimebundle_())

    def close(self) -> None:
        """Close the widgets; where the chart was shown, its last picture (with alt text) stays."""
        bundle = {"text/plain": self.alt_text(), "text/html": self.chart.value or html.escape(self.alt_text())}
        close_widgets(self._widgets)
        self._displays.update(bundle)


__all__ = ["StatsChart"]
