"""Failing a cell with one readable line.

IPython renders an exception that has ``_render_traceback_`` with that method's lines instead
of a traceback, while still treating the cell as failed: Run-All stops and nbclient raises.
The exception class keeps the name of the original error (``NotFound``, ``InvalidArgument``...)
and inherits from it, so ``except NotFound`` around ``run_line_magic`` still works.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from ...errors import CtrError

RED = "\x1b[0;31m"
RESET = "\x1b[0m"

# user:password@ in URLs, and KEY=VALUE pairs whose key names a secret.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)
_SECRET_ASSIGNMENT = re.compile(
    r"(?P<key>\b[A-Za-z_][A-Za-z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|APIKEY|CREDENTIALS?|AUTH)"
    r"[A-Za-z0-9_]*)=(?P<value>\S+)",
    re.IGNORECASE,
)


# Hints written for Python callers of the Service, said the way a notebook user acts on them.
_MAGIC_HINTS = (
    (re.compile(r"list containers with list_containers\(\)"), "see %ctr ps -a"),
    (re.compile(r"\(start_container\)"), "(%ctr start)"),
    (re.compile(r"\(stop_container\)"), "(%ctr stop)"),
    (re.compile(r"list_snapshots\('[^']*'\) shows the committed snapshots"), "%ctr snapshots lists them"),
    (re.compile(r"StartTaskOptions\(log_path=service\.log_path_for\(id\)\)"), "%ctr run -d or %ctr start"),
)


def as_magic_hint(text: str) -> str:
    for pattern, replacement in _MAGIC_HINTS:
        text = pattern.sub(replacement, text)
    return text


def redact(text: str) -> str:
    """Hide credentials in URLs and values of secret-looking ``KEY=value`` pairs."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group('key')}=***", text)


class CellFailure(Exception):
    """Raised out of ``%ctr`` to fail the cell; IPython shows only :meth:`_render_traceback_`."""

    def __init__(self, line: str, *, source: BaseException | None = None) -> None:
        Exception.__init__(self, line)
        self.line = line
        self.source = source
        # Keep the original's attributes (exit_code...), with the one-line message.
        if source is not None:
            self.__dict__.update({k: v for k, v in vars(source).items() if not k.startswith("_")})
        self.message = line
        self.hint = ""

    def __str__(self) -> str:
        return self.line

    def _render_traceback_(self) -> list[str]:
        return [f"{RED}{type(self).__name__}{RESET}: {self.line}"]


@functools.cache
def failure_class(source_type: type[BaseException]) -> type[CellFailure]:
    """A CellFailure subclass named like, and inheriting from, ``source_type`` (a CtrError); one per type."""
    if not issubclass(source_type, CtrError):
        return CellFailure
    return type(source_type.__name__, (CellFailure, source_type), {"__module__": source_type.__module__})


def one_line(exc: BaseException) -> str:
    """The first line of an error's message, credentials removed."""
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    if len(text.splitlines()) > 1:
        first += " …"
    return redact(first)


def to_failure(exc: BaseException, command: str) -> CellFailure:
    """Wrap ``exc`` (raised while running ``%ctr <command>``) as a one-line cell failure."""
    prefix = f"%ctr {command}: " if command else "%ctr: "
    if isinstance(exc, CtrError):
        return failure_class(type(exc))(prefix + as_magic_hint(one_line(exc)), source=exc)
    if isinstance(exc, KeyboardInterrupt):
        from ...errors import Interrupted

        return failure_class(Interrupted)(prefix + "interrupted", source=exc)
    # A bug or an unexpected library error: still one line, with the way to the details.
    detail = f"{type(exc).__name__}: {one_line(exc)}"
    return CellFailure(f"{prefix}unexpected error {detail} (run with --debug for the traceback)", source=exc)


def render(exc: Any) -> str:
    """The plain (uncoloured) line a failure renders as, for tests and logs."""
    return f"{type(exc).__name__}: {exc}"
