"""``CtrMagic``: the ``%ctr`` / ``%%ctr`` magics, their settings and their error handling."""

from __future__ import annotations

import atexit
from typing import Any, Optional

from IPython.core.magic import Magics, line_cell_magic, magics_class, needs_local_scope
from traitlets import Bool, Enum, Float, Unicode, observe
from traitlets.config.configurable import Configurable

from ...constants import DEFAULT_STOP_TIMEOUT
from ...errors import InvalidArgument
from ..lock import LOCK_FILE_NAME
from . import parsing
from .context import Context
from .failure import to_failure
from .session import ConnectionSettings, Session


@magics_class
class CtrMagic(Magics, Configurable):
    """Containers as a notebook resource: ``%ctr COMMAND ...`` (``%ctr --help`` lists the commands)."""

    backend = Unicode("", help="containerd, docker, apple or swarm; empty: $CTR_MAGIC_BACKEND, else containerd").tag(
        config=True
    )
    socket = Unicode(
        "", help="daemon socket; empty: $CTR_MAGIC_SOCKET, the private environment, else the system socket"
    ).tag(config=True)
    namespace = Unicode("", help="containerd namespace; empty: $CTR_MAGIC_NAMESPACE, else 'default'").tag(
        config=True
    )
    debug = Bool(False, help="show full tracebacks instead of one-line errors").tag(config=True)
    progress = Enum(
        ["auto", "widgets", "text", "none"],
        "auto",
        help="pull/push progress: widgets in a notebook, text in a terminal (auto), or none",
    ).tag(config=True)
    lock_file = Unicode(LOCK_FILE_NAME, help="lock file path, relative to the working directory").tag(config=True)
    use_lock = Bool(True, help="resolve image refs through the lock file when it exists").tag(config=True)
    cni_conf_dir = Unicode("", help="CNI network configs for --net / net up; empty: the backend's default bridge").tag(
        config=True
    )
    stop_timeout = Float(
        DEFAULT_STOP_TIMEOUT, help="seconds `stop` waits before it gives up (or kills with --force)"
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        self.session = Session(self._connection_settings)
        Configurable.__init__(self, config=shell.config if shell is not None else None)
        Magics.__init__(self, shell=shell, **kwargs)
        if shell is not None and self not in shell.configurables:
            shell.configurables.append(self)
        atexit.register(self.session.close)

    def _connection_settings(self) -> ConnectionSettings:
        return ConnectionSettings(self.backend, self.socket, self.namespace)

    @observe("backend", "socket", "namespace")
    def _connection_changed(self, change: Any) -> None:
        self.session.disconnect()

    def close(self) -> None:
        self.session.close()
        atexit.unregister(self.session.close)

    # -- the magic ------------------------------------------------------------------------------
    @needs_local_scope
    @line_cell_magic
    def ctr(self, line: str, cell: Optional[str] = None, local_ns: Optional[dict[str, Any]] = None) -> Any:
        """Run a %ctr command; `%ctr --help` lists them, `%ctr COMMAND --help` explains one."""
        return self.execute(line, cell, local_ns)

    # `%ctr?` shows this instead of the docstring above: IPython's inspector asks an object's getdoc() first.
    vars(ctr)["getdoc"] = parsing.help_text

    def execute(self, line: str, cell: Optional[str] = None, local_ns: Optional[dict[str, Any]] = None) -> Any:
        """Parse and run one command; failures become one-line cell errors (``--debug``: traceback)."""
        debug = self.debug
        name = ""
        try:
            words = parsing.split_line(line)
            # Before parsing succeeds only the raw words can say --debug (a usage error shows its traceback too).
            debug = debug or "--debug" in words
            name = " ".join(words[:1])
            parsed = parsing.parse(words)
            debug = self.debug or parsed.debug
            cmd = parsed.command
            assert cmd is not None
            name = cmd.name
            if cell is not None and cmd.cell == parsing.CELL_NEVER:
                raise InvalidArgument(
                    f"%%ctr {name} takes no cell body", hint=f"write %ctr {name} ... on one line instead"
                )
            ctx = Context(magic=self, session=self.session, command=name, cell=cell, local_ns=local_ns, line=line)
            return cmd.func(ctx, parsed.args)
        except parsing.HelpShown:
            return None
        except BaseException as exc:
            if isinstance(exc, SystemExit | GeneratorExit) or debug:
                raise
            raise to_failure(exc, name) from None
