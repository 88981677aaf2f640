"""The live container dashboard: one row per container, updated from the backend's event stream.

Threads: one follows the event stream (changes show up as the daemon reports them, no polling),
one samples CPU and memory of running containers every ``stats_interval`` seconds (0: never),
and each button press runs on a short-lived thread so a slow stop never blocks the kernel.
:meth:`Dashboard.close` ends the subscription and joins every one of them.
"""

from __future__ import annotations

import atexit
import html
import logging
import re
import threading
from collections.abc import Callable
from typing import Any, Optional

from ... import features
from ...errors import CtrError
from ...monitoring import RESYNC
from . import actions
from .lifecycle import Displays, close_widgets
from .rows import COLUMNS, STATUS_COLOURS, STATUSES, RowState, cells, html_table, read_row, text_table

log = logging.getLogger(__name__)

_JOIN_TIMEOUT = 10.0
_WIDTHS = {"id": "11em", "image": "10em", "status": "7em", "pid": "4em", "uptime": "5em", "ip": "7em",
           "cpu %": "4em", "memory": "11em"}
_LABELS_WIDTH = "16em"
BUTTONS = ("start", "stop", "kill", "remove", "logs", "console")


def css_id(container_id: str) -> str:
    """A CSS class name for a container's row (``ctr-row-<id>``; other characters become ``_``)."""
    return "ctr-row-" + re.sub(r"[^A-Za-z0-9_-]", "_", container_id)


class _Row:
    """The widgets of one row."""

    def __init__(self, w: Any, state: RowState, on_click: Callable[[str, str], None]) -> None:
        self.state = state
        self.cells = {c: w.HTML(layout=w.Layout(width=_WIDTHS[c])) for c in COLUMNS}
        self.cells["status"].add_class("ctr-status")
        self.buttons = {}
        for name in BUTTONS:
            button = w.Button(description=name, tooltip=f"{name} {state.id}",
                              layout=w.Layout(width="auto", min_width="fit-content", padding="0 6px"))
            button.add_class(f"ctr-btn-{name}")
            button.on_click(lambda _b, n=name: on_click(n, self.state.id))
            self.buttons[name] = button
        self.confirm = w.Button(description="yes, remove", button_style="danger", layout=w.Layout(width="auto"))
        self.confirm.add_class("ctr-btn-confirm")
        self.cancel = w.Button(description="cancel", layout=w.Layout(width="auto"))
        self.confirm.on_click(lambda _b: on_click("confirm-remove", self.state.id))
        self.cancel.on_click(lambda _b: on_click("cancel-remove", self.state.id))
        self.actions = w.HBox(list(self.buttons.values()))
        self.labels = w.HTML(layout=w.Layout(width=_LABELS_WIDTH, display="none"))
        self.labels.add_class("ctr-labels")
        self.box = w.HBox([*self.cells.values(), self.labels, self.actions])
        self.box.add_class("ctr-row")
        self.box.add_class(css_id(state.id))
        self.show(state)

    def show(self, state: RowState) -> None:
        self.state = state
        for column, value in cells(state).items():
            text = html.escape(value)
            if column == "status":
                colour = STATUS_COLOURS.get(state.status, STATUS_COLOURS["unknown"])
                text = f'<span style="color:{colour};font-weight:bold" data-status="{state.status}">{text}</span>'
            elif column == "image" and value:
                short = value.rsplit("/", 1)[-1]
                text = f'<span title="{text}" style="white-space:nowrap">{html.escape(short)}</span>'
            elif column == "id" and state.labels:
                labels = ", ".join(f"{k}={v}" for k, v in sorted(state.labels.items()))
                text = f'<span title="{html.escape(labels)}">{text}</span>'
            if self.cells[column].value != text:
                self.cells[column].value = text
        labels = "<br>".join(html.escape(f"{k}={v}") for k, v in sorted(state.labels.items()))
        if self.labels.value != labels:
            self.labels.value = labels
        running = state.status in ("running", "paused")
        self.buttons["start"].disabled = running
        self.buttons["stop"].disabled = not running
        self.buttons["kill"].disabled = not running
        self.buttons["console"].disabled = state.status != "running"

    def asking(self, yes: bool) -> None:
        self.actions.children = (self.confirm, self.cancel) if yes else tuple(self.buttons.values())

    def widgets(self) -> list[Any]:
        return [*self.cells.values(), self.labels, *self.buttons.values(), self.confirm, self.cancel, self.actions,
                self.box]


class Dashboard:
    """``Dashboard(service)``: display it (last expression of a cell) to see it; ``close()`` when done."""

    def __init__(self, service: Any, *, label: str = "", status: str = "", stats_interval: float = 2.0,
                 stop_timeout: float = 10.0, title: str = "") -> None:
        import ipywidgets as w

        self._w = w
        self.service = service
        self.stop_timeout = stop_timeout
        self.title = title or f"containers ({getattr(service, 'backend', '?')})"
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._rows: dict[str, _Row] = {}
        self._action_threads: set[threading.Thread] = set()
        self._owned: list[Any] = []
        self._detail_closers: list[Any] = []
        self._displays = Displays()
        self.closed = False
        events = features.require(service, features.Events, "%ctr dashboard")
        self._stream = events.container_events()  # subscribe first, then list: no change falls in between
        try:
            self._build(w, label, status)
            for info in service.list_containers():
                self._refresh(info.id)
        except BaseException:
            self._stream.close()
            self._close_widgets()
            raise
        self._follower = threading.Thread(target=self._follow, name="ctr-dashboard-events", daemon=True)
        self._follower.start()
        self._sampler: Optional[threading.Thread] = None
        if stats_interval > 0 and features.supports(service, features.Stats):
            self._sampler = threading.Thread(target=self._sample, args=(stats_interval,),
                                             name="ctr-dashboard-stats", daemon=True)
            self._sampler.start()
        atexit.register(self.close)

    # -- layout -----------------------------------------------------------------------------------
    def _build(self, w: Any, label: str, status: str) -> None:
        self.header = w.HTML()
        self.label_filter = w.Text(value=label, description="label", placeholder="key or key=value")
        self.status_filter = w.Dropdown(options=[("any", ""), *[(s, s) for s in STATUSES]], value=status,
                                        description="status")
        self.label_filter.observe(lambda _c: self._apply_filters(), names="value")
        self.status_filter.observe(lambda _c: self._apply_filters(), names="value")
        titles = [w.HTML(f"<b>{c}</b>", layout=w.Layout(width=_WIDTHS[c])) for c in COLUMNS]
        self.labels_title = w.HTML("<b>labels</b>", layout=w.Layout(width=_LABELS_WIDTH, display="none"))
        titles.append(self.labels_title)
        self.show_labels = w.Checkbox(value=False, description="labels", indent=False,
                                      layout=w.Layout(width="auto"))
        self.show_labels.observe(lambda _c: self._apply_filters(), names="value")
        self.table = w.VBox([w.HBox(titles)])
        self.message = w.HTML()
        self.message.add_class("ctr-dashboard-message")
        self.detail = w.VBox()
        filters = w.HBox([self.label_filter, self.status_filter, self.show_labels])
        self.widget = w.VBox([self.header, filters, self.table, self.message, self.detail])
        self.widget.add_class("ctr-dashboard")
        self._owned += [self.header, self.label_filter, self.status_filter, self.show_labels, filters, *titles,
                        *self.table.children, self.table, self.message, self.detail, self.widget]

    def _update_header(self) -> None:
        shown = sum(1 for r in self._rows.values() if r.box.layout.display != "none")
        state = "closed" if self.closed else "live"
        self.header.value = (f"<b>{html.escape(self.title)}</b>: {shown} of {len(self._rows)} shown, "
                             f'<span class="ctr-dashboard-state">{state}</span>')

    def _apply_filters(self) -> None:
        labels_display = None if self.show_labels.value else "none"
        with self._lock:
            self.labels_title.layout.display = labels_display
            for row in self._rows.values():
                visible = row.state.matches(self.label_filter.value.strip(), self.status_filter.value)
                row.box.layout.display = None if visible else "none"
                row.labels.layout.display = labels_display
            self._update_header()

    # -- state --------------------------------------------------------------------------------------
    @property
    def rows(self) -> dict[str, RowState]:
        """Container id -> what its row shows now."""
        with self._lock:
            return {cid: row.state for cid, row in self._rows.items()}

    def buttons(self, container_id: str) -> dict[str, Any]:
        """The row's buttons by name (``start``, ``stop``, ..., plus ``confirm`` and ``cancel``)."""
        row = self._rows[container_id]
        return {**row.buttons, "confirm": row.confirm, "cancel": row.cancel}

    @property
    def threads(self) -> list[threading.Thread]:
        """Every thread this dashboard runs now (none once closed)."""
        candidates = [self._follower, self._sampler, *self._action_threads, *self._stream.threads]
        return [t for t in candidates if t is not None and t.is_alive()]

    def _refresh(self, container_id: str) -> None:
        with self._lock:
            current = self._rows.get(container_id)
            state = read_row(self.service, container_id, current.state if current else None)
            if self.closed:
                return
            if state is None:
                if current is not None:
                    del self._rows[container_id]
                    self.table.children = tuple(c for c in self.table.children if c is not current.box)
                    close_widgets(current.widgets())
            elif current is None:
                row = _Row(self._w, state, self._clicked)
                self._rows[container_id] = row
                ordered = sorted(self._rows.values(), key=lambda r: r.state.id)
                self.table.children = (self.table.children[0], *(r.box for r in ordered))
            else:
                current.show(state)
            self._apply_filters()

    def _follow(self) -> None:
        for event in self._stream:
            if self._stopping.is_set():
                break
            if event.action == RESYNC:  # the daemon restarted: changes meanwhile were not delivered
                self._resync()
                continue
            try:
                self._refresh(event.container_id)
            except CtrError as exc:  # the daemon is busy or gone: say so, keep following
                self._say(f"could not refresh {event.container_id}: {exc}", error=True)
        if self._stream.error is not None and not self._stopping.is_set():
            self._say(f"event stream ended: {self._stream.error}", error=True)

    def _resync(self) -> None:
        try:
            known = {info.id for info in self.service.list_containers()}
        except CtrError as exc:
            self._say(f"could not list containers after the daemon came back: {exc}", error=True)
            return
        for cid in sorted(known | set(self.rows)):
            try:
                self._refresh(cid)
            except CtrError as exc:
                self._say(f"could not refresh {cid}: {exc}", error=True)

    def _sample(self, interval: float) -> None:
        stats = features.require(self.service, features.Stats)
        while not self._stopping.wait(interval):
            for cid, state in self.rows.items():
                if state.status != "running":
                    continue
                try:
                    sample = stats.container_stats(cid)
                except CtrError:
                    continue  # stopped meanwhile; its event refreshes the row
                with self._lock:
                    row = self._rows.get(cid)
                    if row is not None and not self.closed:
                        row.show(row.state.with_sample(sample))

    # -- buttons ------------------------------------------------------------------------------------
    def _say(self, text: str, *, error: bool = False) -> None:
        colour = "#c62828" if error else "inherit"
        if not self.closed:
            self.message.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def _clicked(self, name: str, container_id: str) -> None:
        row = self._rows.get(container_id)
        if row is None or self.closed:
            return
        if name == "remove":
            row.asking(True)
            self._say(f"remove {container_id} and its snapshot?")
            return
        if name == "cancel-remove":
            row.asking(False)
            self._say("")
            return
        if name == "logs":
            self._in_background(name, container_id, self._show_logs)
            return
        if name == "console":
            self.open_console(container_id)
            return
        action = "remove" if name == "confirm-remove" else name
        self._in_background(action, container_id, self._act)

    def _in_background(self, name: str, container_id: str, target: Callable[[str, str], None]) -> None:
        thread = threading.Thread(target=self._tracked, args=(target, name, container_id),
                                  name=f"ctr-dashboard-{name}", daemon=True)
        with self._lock:
            self._action_threads.add(thread)
        thread.start()

    def _tracked(self, target: Callable[[str, str], None], name: str, container_id: str) -> None:
        try:
            target(name, container_id)
        finally:
            with self._lock:
                self._action_threads.discard(threading.current_thread())

    def _act(self, name: str, container_id: str) -> None:
        self._say(f"{name} {container_id}…")
        error = actions.run(self.service, name, container_id, stop_timeout=self.stop_timeout)
        self._say(f"{name} {container_id}: {error}" if error else f"{name} {container_id}: done", error=bool(error))
        row = self._rows.get(container_id)
        if row is not None and name == "remove":
            row.asking(False)

    def _show_logs(self, _name: str, container_id: str) -> None:
        try:
            text = actions.logs_text(self.service, container_id)
        except CtrError as exc:
            self._say(f"logs of {container_id}: {exc}", error=True)
            return
        pre = self._w.HTML(f'<pre class="ctr-logs" style="max-height:20em;overflow:auto">{html.escape(text)}</pre>')
        self._show_detail(f"logs of {container_id}", pre)

    def open_console(self, container_id: str) -> Any:
        """Open an exec console on *container_id* under the table (the row's "console" button)."""
        from .console import Console

        console = Console(self.service, container_id)
        self._show_detail(f"console in {container_id}", console.widget, closer=console)
        return console

    def _show_detail(self, title: str, widget: Any, closer: Any = None) -> None:
        with self._lock:
            if self.closed:
                if closer is not None:
                    closer.close()
                return
            for old in self._detail_closers:
                old.close()
            heading = self._w.HTML(f"<b>{html.escape(title)}</b>")
            self._owned += [heading, widget]
            self._detail_closers = [closer] if closer is not None else []
            self.detail.children = (heading, widget)

    # -- display ------------------------------------------------------------------------------------
    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        live = self.widget._repr_mimebundle_ if self.widget.comm is not None else None
        data = dict(live() or {}) if live is not None else {}  # a closed view renders statically
        rows = sorted(self.rows.values(), key=lambda r: r.id)
        data["text/plain"] = text_table(rows, self.title)
        data["text/html"] = html_table(rows, self.title)
        return data

    def _ipython_display_(self) -> None:
        self._displays.show(self._repr_mimebundle_())

    def static_bundle(self) -> dict[str, str]:
        """The HTML table and the text table of the rows now (what a closed dashboard leaves behind)."""
        rows = sorted(self.rows.values(), key=lambda r: r.id)
        return {"text/plain": text_table(rows, self.title), "text/html": html_table(rows, f"{self.title}, closed")}

    def __repr__(self) -> str:
        return text_table(sorted(self.rows.values(), key=lambda r: r.id), self.title)

    # -- closing ------------------------------------------------------------------------------------
    def close(self) -> None:
        """End the event subscription, join every thread and close every widget of the dashboard."""
        if self.closed:
            return
        self._stopping.set()
        self._stream.close()
        for thread in [self._follower, self._sampler, *list(self._action_threads)]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(_JOIN_TIMEOUT)
        with self._lock:
            for closer in self._detail_closers:
                closer.close()
            self.closed = True
            self._close_widgets()
        self._displays.update(self.static_bundle())
        atexit.unregister(self.close)

    def _close_widgets(self) -> None:
        for row in self._rows.values():
            close_widgets(row.widgets())
        close_widgets(self._owned)

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["BUTTONS", "Dashboard", "css_id"]
