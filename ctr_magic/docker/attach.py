"""Start a container attached (``%ctr run`` in the foreground) on the Engine API.

``POST /containers/{id}/attach`` before the start, so no output is lost: the hijacked stream
carries stdout and stderr multiplexed (raw with a tty) and, for a container created with
``spec.stdin``, takes its input; half-closing it ends the input (``StdinOnce``). The exit code
comes from ``/wait``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Optional

from .. import errors
from ..types import ExecTaskResult, ExecTaskSession
from .exec import PipeSink, SocketStdin
from .frames import STDERR, iter_frames

if TYPE_CHECKING:
    from .api import EngineAPI
    from .names import ContainerNames

log = logging.getLogger(__name__)

_JOIN = 5.0


class AttachPart:
    """The Attaching feature on the Engine API (a part of DockerService)."""

    def __init__(self, api: EngineAPI, names: ContainerNames) -> None:
        self.api = api
        self.names = names

    def start_attached(self, container_id: str, *, stdin: bool = False, terminal: bool = False) -> ExecTaskSession:
        """Attach, start, and return at once a session over the container's own stdio."""
        data = self.names.resolve(container_id)
        cid = str(data["Id"])
        config = data.get("Config") or {}
        tty = bool(config.get("Tty"))
        if terminal and not tty:
            raise errors.InvalidArgument(f"container {container_id} was created without a terminal",
                                         hint="create it with a tty (`%ctr run -t`)")
        if stdin and not config.get("OpenStdin"):
            raise errors.InvalidArgument(f"container {container_id} was created with stdin closed",
                                         hint="create it with spec.stdin=True (`%ctr run -i`)")
        try:
            conn = self.api.container_attach(cid, stdin=stdin)
        except errors.NotFound as exc:
            if "page not found" not in str(exc).lower():
                raise
            raise errors.NotSupported(f"attaching to container {container_id}: the daemon does not serve it",
                                      hint="run it detached (-d) and read %ctr logs -f") from None
        out, err = PipeSink(), PipeSink()

        def pump() -> None:
            try:
                for stream, chunk in iter_frames(conn.recv, multiplexed=not tty):
                    (err if stream == STDERR else out)(chunk)
            except (OSError, ValueError):
                log.debug("attach to %s ended", container_id, exc_info=True)
            finally:
                out.finish()
                err.finish()

        thread = threading.Thread(target=pump, name=f"attach-{container_id}", daemon=True)
        thread.start()
        try:
            self.api.container_start(cid)
        except BaseException:
            conn.shutdown()
            thread.join(_JOIN)
            out.reader.close()
            err.reader.close()
            conn.close()
            raise
        state: dict[str, Optional[ExecTaskResult]] = {"result": None}

        def wait(timeout: Optional[float] = None) -> ExecTaskResult:
            if state["result"] is None:
                try:
                    answer = self.api.container_wait(cid, condition="not-running", timeout=timeout)
                except errors.Interrupted:
                    raise errors.Interrupted(f"container {container_id} still running after {timeout}s",
                                             hint="wait longer, or close() to kill it") from None
                state["result"] = ExecTaskResult(exit_code=int(answer.get("StatusCode", 0)))
            return state["result"]

        def close() -> None:
            if state["result"] is None:
                with contextlib.suppress(errors.CtrError):
                    self.api.container_kill(cid, "SIGKILL")
            conn.shutdown()
            for reader in (out.reader, err.reader):
                reader.close()
            thread.join(_JOIN)
            conn.close()

        return ExecTaskSession(stdin=SocketStdin(conn) if stdin else None, stdout=out.reader,
                               stderr=None if tty else err.reader, wait=wait, close=close)


__all__ = ["AttachPart"]
