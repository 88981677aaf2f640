"""What a subcommand handler gets: the session, the shell, the cell body and output helpers."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from ...constants import DEFAULT_SNAPSHOTTER
from ...errors import InvalidArgument
from .failure import RED, RESET, redact

if TYPE_CHECKING:
    from .core import CtrMagic
    from .session import Session


@dataclass
class Context:
    magic: CtrMagic
    session: Session
    command: str
    cell: Optional[str] = None
    local_ns: Optional[dict[str, Any]] = None
    line: str = ""  # the magic's line as typed (after IPython's {var} expansion), for raw text after --

    @property
    def service(self) -> Any:
        return self.session.service

    @property
    def snapshotter(self) -> str:
        """The service's snapshotter (containerd's default for a service that names none)."""
        return getattr(self.service, "snapshotter", "") or DEFAULT_SNAPSHOTTER

    @property
    def shell(self) -> Any:
        return self.magic.shell

    # -- variables ------------------------------------------------------------------------------
    def lookup(self, name: str) -> Any:
        """A Python value by name: local scope first, then the user namespace."""
        for ns in (self.local_ns, getattr(self.shell, "user_ns", None)):
            if ns is not None and name in ns:
                return ns[name]
        raise InvalidArgument(f"no Python variable named {name!r}")

    def store(self, name: str, value: Any) -> None:
        """Assign ``value`` to ``name`` in the user namespace."""
        if not name.isidentifier():
            raise InvalidArgument(f"{name!r} is not a valid Python variable name")
        self.shell.user_ns[name] = value

    # -- output ---------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """One informational line on stdout (credentials redacted)."""
        sys.stdout.write(redact(text) + "\n")
        sys.stdout.flush()

    def warn(self, text: str) -> None:
        """One error-coloured line on stderr (a failure that does not fail the cell)."""
        sys.stderr.write(f"{RED}{redact(text)}{RESET}\n")
        sys.stderr.flush()
