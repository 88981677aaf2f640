"""An exec console: an input line and an output area bound to one streaming exec session (``sh``).

stdout and stderr are read by one thread each and kept apart (stderr in red); the exit code is
shown when the shell ends. History: the input is a combobox whose list holds earlier commands
(the browser's up/down keys walk it), plus ↑/↓ buttons. "Ctrl-C" sends SIGINT to what the shell is
running now (the shell's children), through a second exec, so the console itself survives.
"""

from __future__ import annotations

import atexit
import contextlib
import html
import logging
import threading
from typing import Any, Optional

from ...errors import CtrError
from ...types import ExecTaskRequest
from .lifecycle import Displays, close_widgets

log = logging.getLogger(__name__)

_PID_MARK = "__ctr_console_pid="
_MAX_CHUNKS = 2000
_JOIN_TIMEOUT = 10.0


class Console:
    """``Console(service, "box")``: display it; type a command and press Enter; ``close()`` ends it."""

    def __init__(self, service: Any, container_id: str, command: tuple[str, ...] = ("sh",)) -> None:
        import ipywidgets as w

        self.service = service
        self.container_id = container_id
        self.command = command
        self.history: list[str] = []
        self._cursor = 0
        self._chunks: list[tuple[str, str]] = []  # (stream, text)
        self._lock = threading.Lock()
        self.exit_code: Optional[int] = None
        self.shell_pid = 0
        self.closed = False
        self._displays = Displays()
        # The first line tells the shell's pid (inside the container), for the Ctrl-C button.
        script = f'echo "{_PID_MARK}$$"; exec {" ".join(command)}'
        self._session = service.exec_task_streaming(container_id, ExecTaskRequest(args=["sh", "-c", script]))
        self.output = w.HTML(layout=w.Layout(width="100%"))
        self.output.add_class("ctr-console-output")
        self.input = w.Combobox(placeholder=f"command for {container_id}, then Enter", options=[],
                                ensure_option=False, continuous_update=False, layout=w.Layout(width="60%"))
        self.input.add_class("ctr-console-input")
        self.input.observe(self._submitted, names="value")
        self.up = w.Button(description="↑", tooltip="previous command", layout=w.Layout(width="3em"))
        self.down = w.Button(description="↓", tooltip="next command", layout=w.Layout(width="3em"))
        self.interrupt = w.Button(description="Ctrl-C", tooltip="send SIGINT to the running command",
                                  button_style="warning", layout=w.Layout(width="auto"))
        self.interrupt.add_class("ctr-console-interrupt")
        self.up.on_click(lambda _b: self._walk(-1))
        self.down.on_click(lambda _b: self._walk(1))
        self.interrupt.on_click(lambda _b: self.send_interrupt())
        self.status = w.HTML(f"<code>{html.escape(' '.join(command))}</code> in {html.escape(container_id)}")
        self.status.add_class("ctr-console-status")
        self.widget = w.VBox([self.status, self.output, w.HBox([self.input, self.up, self.down, self.interrupt])])
        self.widget.add_class("ctr-console")
        self._widgets = [self.output, self.input, self.up, self.down, self.interrupt, self.status,
                         *self.widget.children, self.widget]
        self._readers = [threading.Thread(target=self._read, args=(name, stream), daemon=True,
                                          name=f"ctr-console-{name}")
                         for name, stream in (("stdout", self._session.stdout), ("stderr", self._session.stderr))
                         if stream is not None]
        for reader in self._readers:
            reader.start()
        self._waiter = threading.Thread(target=self._wait, name="ctr-console-wait", daemon=True)
        self._waiter.start()
        atexit.register(self.close)

    # -- input --------------------------------------------------------------------------------------
    def _submitted(self, change: Any) -> None:
        line = str(change["new"])
        if not line:
            return
        self.send(line)
        self.input.value = ""

    def send(self, line: str) -> None:
        """Run *line* in the shell (as if typed and Enter pressed)."""
        if self.exit_code is not None or self.closed:
            return
        self.history.append(line)
        self._cursor = len(self.history)
        self.input.options = list(dict.fromkeys(reversed(self.history)))
        self._append("input", f"$ {line}\n")
        try:
            assert self._session.stdin is not None
            self._session.stdin.write(line.encode() + b"\n")
            self._session.stdin.flush()
        except (OSError, ValueError, CtrError) as exc:
            self._append("stderr", f"could not send: {exc}\n")

    def _walk(self, step: int) -> None:
        if not self.history:
            return
        self._cursor = min(max(self._cursor + step, 0), len(self.history))
        text = self.history[self._cursor] if self._cursor < len(self.history) else ""
        self.input.unobserve(self._submitted, names="value")
        try:
            self.input.value = text
        finally:
            self.input.observe(self._submitted, names="value")

    def send_interrupt(self) -> None:
        """SIGINT to the shell's children (the running command); the shell itself carries on."""
        if not self.shell_pid or self.exit_code is not None:
            return
        # Shell builtins only (small images have no pkill): the children of the shell, from /proc.
        script = ('for s in /proc/[0-9]*/stat; do read -r p _c _s pp _r < "$s" 2>/dev/null || continue; '
                  f'[ "$pp" = {self.shell_pid} ] && kill -INT "$p"; done; true')
        try:
            self.service.exec_task(self.container_id, ExecTaskRequest(args=["sh", "-c", script]))
            self._append("input", "^C\n")
        except CtrError as exc:
            self._append("stderr", f"could not interrupt: {exc}\n")

    # -- output -------------------------------------------------------------------------------------
    def _read(self, name: str, stream: Any) -> None:
        first = name == "stdout"
        try:
            while True:
                data = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
                if not data:
                    return
                text = data.decode(errors="replace")
                if first and _PID_MARK in text:
                    head, _, rest = text.partition(_PID_MARK)
                    pid, _, text = rest.partition("\n")
                    self.shell_pid = int(pid.strip() or 0)
                    text = head + text
                    first = False
                if text:
                    self._append(name, text)
        except (OSError, ValueError, CtrError):
            log.debug("console %s reader ended", name, exc_info=True)

    def _wait(self) -> None:
        try:
            result = self._session.wait()
            self.exit_code = int(getattr(result, "exit_code", result))
        except (CtrError, OSError) as exc:
            self._append("stderr", f"session ended: {exc}\n")
            return
        for reader in self._readers:
            reader.join(_JOIN_TIMEOUT)
        if not self.closed:
            self.status.value = (f'<span class="ctr-console-exit" data-exit-code="{self.exit_code}">'
                                 f"exited with code {self.exit_code}</span>")
            self.input.disabled = True
            self.interrupt.disabled = True

    def _append(self, stream: str, text: str) -> None:
        with self._lock:
            self._chunks.append((stream, text))
            del self._chunks[:-_MAX_CHUNKS]
            if not self.closed:
                self.output.value = self._render()

    def _render(self) -> str:
        parts = []
        for stream, text in self._chunks:
            escaped = html.escape(text)
            if stream == "stderr":
                parts.append(f'<span class="ctr-stderr" style="color:#c62828">{escaped}</span>')
            elif stream == "input":
                parts.append(f'<span class="ctr-input" style="color:#1565c0;font-weight:bold">{escaped}</span>')
            else:
                parts.append(escaped)
        return ('<pre style="white-space:pre-wrap;word-break:break-all;max-height:24em;overflow:auto;'
                f'margin:0">{"".join(parts)}</pre>')

    def text(self, stream: str = "") -> str:
        """What the console shows (one stream, or all of it)."""
        with self._lock:
            return "".join(t for s, t in self._chunks if not stream or s == stream)

    # -- display and closing --------------------------------------------------------------------------
    @property
    def threads(self) -> list[threading.Thread]:
        return [t for t in (*self._readers, self._waiter) if t.is_alive()]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        live = self.widget._repr_mimebundle_ if self.widget.comm is not None else None
        data = dict(live() or {}) if live is not None else {}  # a closed view renders statically
        data["text/plain"] = f"console: {' '.join(self.command)} in {self.container_id}"
        data["text/html"] = self._render()
        return data

    def _ipython_display_(self) -> None:
        self._displays.show(self._repr_mimebundle_())

    def close(self) -> None:
        """End the shell (if still running), join the reader threads, close the widgets."""
        if self.closed:
            return
        with contextlib.suppress(Exception):
            self._session.close()
        for thread in (*self._readers, self._waiter):
            if thread is not threading.current_thread():
                thread.join(_JOIN_TIMEOUT)
        with self._lock:
            self.closed = True
        close_widgets(self._widgets)
        self._displays.update({"text/plain": self.text(), "text/html": self._render()})
        atexit.unregister(self.close)


__all__ = ["Console"]
