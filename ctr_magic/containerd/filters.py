"""containerd's filter syntax, evaluated on our side.

containerd 1.6 accepts a filter on Tasks.List but ignores it, so ``list_tasks`` passes the filter
through *and* applies it here. The grammar is containerd's::

    selectors := selector ("," selector)*          every selector must match
    selector  := fieldpath (operator value)?       no operator: the field is present
    fieldpath := field ("." field)*
    field     := quoted | [A-Za-z][A-Za-z0-9_]*
    operator  := "==" | "!=" | "~="                ~= is a regular expression search
    value     := quoted | [^\\s,]+
    quoted    := "..." or `...` (Go string syntax)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Optional

from .. import errors

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_BARE_VALUE = re.compile(r"[^\s,]+")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


@dataclass(frozen=True)
class Selector:
    path: tuple[str, ...]
    op: str = ""  # "" means presence
    value: str = ""

    def matches(self, fields: Mapping[str, str]) -> bool:
        actual = fields.get(".".join(self.path))
        if actual is None:
            return self.op == "!="
        if self.op == "":
            return True
        if self.op == "==":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        return re.search(self.value, actual) is not None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> errors.InvalidArgument:
        return errors.InvalidArgument(f"filter {self.text!r}: {what} at position {self.pos}",
                                      hint='e.g. container.id==box or status=="running"')

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def quoted(self) -> Optional[str]:
        if self.pos >= len(self.text) or self.text[self.pos] not in "\"`'":
            return None
        quote = self.text[self.pos]
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == quote:
                return "".join(out)
            if ch == "\\" and quote != "`":
                if self.pos >= len(self.text):
                    break
                esc = self.text[self.pos]
                self.pos += 1
                out.append(_ESCAPES.get(esc, esc))
            else:
                out.append(ch)
        raise self.error("unterminated quoted string")

    def field(self) -> str:
        quoted = self.quoted()
        if quoted is not None:
            return quoted
        found = _IDENT.match(self.text, self.pos)
        if not found:
            raise self.error("expected a field name")
        self.pos = found.end()
        return found.group()

    def selector(self) -> Selector:
        self.skip_space()
        path = [self.field()]
        while self.text.startswith(".", self.pos):
            self.pos += 1
            path.append(self.field())
        self.skip_space()
        op = self.text[self.pos:self.pos + 2]
        if op not in ("==", "!=", "~="):
            return Selector(tuple(path))
        self.pos += 2
        self.skip_space()
        value = self.quoted()
        if value is None:
            found = _BARE_VALUE.match(self.text, self.pos)
            if not found:
                raise self.error("expected a value")
            self.pos = found.end()
            value = found.group()
        if op == "~=":
            try:
                re.compile(value)
            except re.error as exc:
                raise self.error(f"bad regular expression ({exc})") from None
        return Selector(tuple(path), op, value)

    def parse(self) -> list[Selector]:
        selectors = [self.selector()]
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                return selectors
            if self.text[self.pos] != ",":
                raise self.error("expected ','")
            self.pos += 1
            selectors.append(self.selector())


def parse_filter(text: str) -> Callable[[Mapping[str, str]], bool]:
    """A predicate over a flat ``{"a.b": "value"}`` mapping; "" matches everything."""
    if not text.strip():
        return lambda fields: True
    selectors = _Parser(text).parse()
    return lambda fields: all(s.matches(fields) for s in selectors)


def task_fields(container_id: str, pid: int, status: str, exit_status: int) -> dict[str, str]:
    """The field paths a task answers to (containerd's names, and ours)."""
    return {
        "id": container_id,
        "container.id": container_id,
        "container_id": container_id,
        "pid": str(pid),
        "status": status,
        "exit_status": str(exit_status),
        "exit_code": str(exit_status),
    }
