"""containerd's filter syntax, evaluated on TaskInfo (the Engine API has no task filter of its own).

``status==running,container.id~=^web`` : selectors joined by ``,`` must all hold; several filters
joined by `` or `` (or ``|``) are alternatives. Operators: ``==``, ``!=``, ``~=`` (regular
expression); values may be quoted. Fields: ``id``, ``container.id`` (or ``container_id``),
``pid``, ``status``, ``exit_code``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import InvalidArgument
from ..types import TaskInfo

_SELECTOR = re.compile(r"\s*([A-Za-z_][\w.]*)\s*(==|!=|~=)\s*(\"[^\"]*\"|'[^']*'|[^,]*?)\s*\Z")
_FIELDS: dict[str, Callable[[TaskInfo], str]] = {
    "id": lambda t: t.id,
    "container.id": lambda t: t.container_id,
    "container_id": lambda t: t.container_id,
    "pid": lambda t: str(t.pid),
    "status": lambda t: str(t.status),
    "exit_code": lambda t: str(t.exit_code),
}


def compile_filter(text: str) -> Callable[[TaskInfo], bool]:
    """A predicate for *text*; an empty filter matches everything."""
    text = (text or "").strip()
    if not text:
        return lambda _task: True
    alternatives = [part for part in re.split(r"\s+or\s+|\|", text) if part.strip()]
    compiled = [[_selector(sel, text) for sel in alt.split(",")] for alt in alternatives]
    return lambda task: any(all(check(task) for check in alt) for alt in compiled)


def _selector(selector: str, whole: str) -> Callable[[TaskInfo], bool]:
    match = _SELECTOR.match(selector)
    if not match:
        raise InvalidArgument(f"task filter {whole!r}: cannot read {selector.strip()!r}",
                              hint="use field==value, field!=value or field~=regex, e.g. status==running")
    field, op, value = match.groups()
    if value[:1] in "\"'" and value[-1:] == value[:1] and len(value) >= 2:
        value = value[1:-1]
    getter = _FIELDS.get(field)
    if getter is None:
        raise InvalidArgument(f"task filter {whole!r}: unknown field {field!r}",
                              hint=f"fields: {', '.join(sorted(_FIELDS))}")
    if op == "==":
        return lambda task: getter(task) == value
    if op == "!=":
        return lambda task: getter(task) != value
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise InvalidArgument(f"task filter {whole!r}: bad regular expression {value!r} ({exc})") from None
    return lambda task: pattern.search(getter(task)) is not None


__all__ = ["compile_filter"]
