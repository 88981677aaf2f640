"""The ``list_tasks`` filter of every backend: containerd's filter syntax, evaluated here.

containerd 1.6 accepts a filter on Tasks.List but ignores it, and the Engine API has no task
filter at all, so every backend applies :func:`compile_task_filter` to the tasks it lists (the
containerd backend also passes the text on). The grammar is containerd's, plus alternatives::

    filter    := selectors (("|" | " or ") selectors)*   any alternative may match
    selectors := selector ("," selector)*                every selector must match
    selector  := fieldpath (operator value)?             no operator: the field is present
    fieldpath := field ("." field)*
    field     := quoted | [A-Za-z][A-Za-z0-9_]*
    operator  := "==" | "!=" | "~="                      ~= is a regular expression search
    value     := quoted | [^\\s,|]+
    quoted    := "..." or `...` (Go string syntax)

A task filter names task fields only (``id``, ``container.id`` or ``container_id``, ``pid``,
``status``, ``exit_code`` or ``exit_status``) and each selector needs an operator (every task has
every field): ``status==running,container.id~=^web``, ``id==a or id==b``. Anything else is an
InvalidArgument naming the problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Optional

from . import errors
from .types import TaskInfo

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_BARE_VALUE = re.compile(r"[^\s,|]+")
_TASK_FIELDS = ("id", "container.id", "container_id", "pid", "status", "exit_code", "exit_status")
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

    def alternative_follows(self) -> bool:
        """Skip ``|`` or `` or `` (the start of another alternative) if it is next."""
        if self.text.startswith("|", self.pos):
            self.pos += 1
            return True
        if self.text.startswith("or", self.pos) and self.text[self.pos - 1:self.pos].isspace() \
                and self.text[self.pos + 2:self.pos + 3].isspace():
            self.pos += 2
            return True
        return False

    def parse(self) -> list[list[Selector]]:
        alternatives = [[self.selector()]]
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                return alternatives
            if self.alternative_follows():
                alternatives.append([self.selector()])
                continue
            if self.text[self.pos] != ",":
                raise self.error("expected ','")
            self.pos += 1
            alternatives[-1].append(self.selector())


def _predicate(alternatives: list[list[Selector]]) -> Callable[[Mapping[str, str]], bool]:
    return lambda fields: any(all(s.matches(fields) for s in selectors) for selectors in alternatives)


def parse_filter(text: str) -> Callable[[Mapping[str, str]], bool]:
    """A predicate over a flat ``{"a.b": "value"}`` mapping; "" matches everything."""
    if not text.strip():
        return lambda fields: True
    return _predicate(_Parser(text).parse())


def compile_task_filter(text: str) -> Callable[[TaskInfo], bool]:
    """A predicate over tasks for *text* (see the module docstring); "" matches every task."""
    if not (text or "").strip():
        return lambda task: True
    alternatives = _Parser(text).parse()
    for selector in (s for selectors in alternatives for s in selectors):
        field = ".".join(selector.path)
        if field not in _TASK_FIELDS:
            raise errors.InvalidArgument(f"task filter {text!r}: unknown field {field!r}",
                                         hint=f"fields: {', '.join(_TASK_FIELDS)}")
        if not selector.op:
            raise errors.InvalidArgument(f"task filter {text!r}: {field!r} needs an operator and a value",
                                         hint="use field==value, field!=value or field~=regex, e.g. status==running")
    keep = _predicate(alternatives)
    return lambda task: keep(task_fields(task.container_id, task.pid, str(task.status), task.exit_code, task.id))


def task_fields(container_id: str, pid: int, status: str, exit_status: int, task_id: str = "") -> dict[str, str]:
    """The field paths a task answers to (containerd's names, and ours)."""
    return {
        "id": task_id or container_id,
        "container.id": container_id,
        "container_id": container_id,
        "pid": str(pid),
        "status": status,
        "exit_status": str(exit_status),
        "exit_code": str(exit_status),
    }


__all__ = ["compile_task_filter", "parse_filter", "task_fields"]
