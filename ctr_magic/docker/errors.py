"""The one place where Engine API failures become CtrError subclasses.

Every message says what failed and on which object; a hint says what to do next.
"""

from __future__ import annotations

import json
from typing import Union

from .. import errors

# Substrings of daemon messages (lower-cased) that tell more than the HTTP status does. Docker answers
# registry problems with 500 or 404, and socktainer reports pull failures inside a 200 stream.
_BY_MESSAGE: tuple[tuple[tuple[str, ...], type[errors.CtrError]], ...] = (
    (("context canceled",), errors.Interrupted),
    (("unauthorized", "authentication required", "access denied", "denied:", "incorrect username"),
     errors.Unauthorized),
    (("manifest unknown", "not found", "no such", "does not exist", "name unknown"), errors.NotFound),
    (("connection refused", "no such host", "i/o timeout", "dial tcp", "network is unreachable",
      "tls handshake timeout", "server misbehaving"), errors.Unavailable),
    (("already in use", "already exists"), errors.AlreadyExists),
    (("is not running", "is already", "is paused", "is restarting", "conflict", "in use", "is running"),
     errors.FailedPrecondition),
    (("invalid reference", "invalid argument", "invalid mount", "invalid ", "bad parameter", "must be"),
     errors.InvalidArgument),
)  # fmt: skip

_BY_STATUS: dict[int, type[errors.CtrError]] = {
    400: errors.InvalidArgument,
    401: errors.Unauthorized,
    403: errors.Unauthorized,
    404: errors.NotFound,
    409: errors.FailedPrecondition,
    501: errors.NotSupported,
    503: errors.Unavailable,
}

_HINTS: dict[tuple[type[errors.CtrError], str], str] = {
    (errors.NotFound, "container"): "list_containers() (or `%ctr ps -a`) shows the containers that exist",
    (errors.NotFound, "image"): "pull it first (`%ctr pull REF`), or check the name with list_images()",
    (errors.NotFound, "exec"): "the exec session ended or was never created",
    (errors.AlreadyExists, "container"): "choose another id, or delete the existing container first",
    (errors.FailedPrecondition, "image"): "delete the containers that use it first",
    (errors.NotFound, "pull"): "check that the repository and tag exist in the registry",
    (errors.Unauthorized, "pull"): "log in to the registry (the daemon's credentials are used)",
    (errors.Unavailable, "pull"): "is the registry running and reachable from the daemon?",
}


def first_line(text: str) -> str:
    text = (text or "").strip()
    return text.splitlines()[0].strip() if text else ""


def message_of(body: Union[bytes, str]) -> str:
    """The daemon's ``{"message": ...}`` (or plain text) as one line."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return first_line(text)
    if isinstance(data, dict):
        return first_line(str(data.get("message") or data.get("error") or text))
    return first_line(text)


def classify(status: int, message: str) -> type[errors.CtrError]:
    """The CtrError subclass for an HTTP *status* and the daemon's *message*."""
    lowered = message.lower()
    if status == 409 and ("already in use" in lowered or "already exists" in lowered):
        return errors.AlreadyExists
    if status in (400, 401, 403, 404, 409, 501):
        return _BY_STATUS[status]
    for needles, cls in _BY_MESSAGE:
        if any(needle in lowered for needle in needles):
            return cls
    return _BY_STATUS.get(status, errors.CtrError)


def error_for(status: int, message: str, *, what: str, kind: str = "") -> errors.CtrError:
    """One actionable error: *what* names the operation and its object, *kind* picks the hint."""
    cls = classify(status, message)
    detail = message or f"HTTP {status}"
    return cls(f"{what}: {detail}", hint=_HINTS.get((cls, kind), ""))


def stream_error(message: str, *, what: str, kind: str = "") -> errors.CtrError:
    """An error reported inside a 200 stream (``{"error": ...}`` line of a pull, for example)."""
    return error_for(500, first_line(message), what=what, kind=kind)


def unavailable(socket_path: str, exc: BaseException, *, daemon: str = "the Docker daemon") -> errors.Unavailable:
    """The daemon's socket cannot be reached (missing, refused, or the connection broke)."""
    reason = first_line(str(exc)) or type(exc).__name__
    return errors.Unavailable(
        f"cannot reach {daemon} at {socket_path} ({reason})",
        hint="is it running? point DOCKER_HOST or socket= at its unix socket",
    )


def went_away(what: str, socket_path: str, exc: BaseException, *, daemon: str = "the Docker daemon"
              ) -> errors.Unavailable:
    """The connection was up and broke during *what*: the daemon stopped or restarted."""
    reason = first_line(str(exc)) or type(exc).__name__
    return errors.Unavailable(
        f"{what}: {daemon} at {socket_path} went away while the call ran ({reason})",
        hint="it restarted or stopped; make the call again once it is back",
    )


__all__ = ["classify", "error_for", "first_line", "message_of", "stream_error", "unavailable", "went_away"]
