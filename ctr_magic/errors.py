"""Typed errors: every backend failure becomes one of these.

Messages are meant for people: what failed, on which object, what to do next.
"""

from __future__ import annotations


class CtrError(Exception):
    """Base class of every error ctr-magic raises on purpose."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}: {hint}" if hint else message)


class InvalidArgument(CtrError):
    """The caller passed something that can never work (empty id, bad ref...)."""


class NotFound(CtrError):
    """The named object does not exist."""


class AlreadyExists(CtrError):
    """An object with that name exists already; nothing was changed."""


class FailedPrecondition(CtrError):
    """The object is in the wrong state for the call (e.g. a running task)."""


class Unavailable(CtrError):
    """The daemon or registry could not be reached."""


class Unauthorized(CtrError):
    """Credentials were missing or refused."""


class TaskStopTimeout(CtrError):
    """The task did not exit within the stop timeout and force was not set."""


class NotSupported(CtrError):
    """The operation is not supported on this backend."""


class Interrupted(CtrError):
    """The call was interrupted (KeyboardInterrupt or deadline); nothing was left behind."""


__all__ = [
    "AlreadyExists",
    "CtrError",
    "FailedPrecondition",
    "Interrupted",
    "InvalidArgument",
    "NotFound",
    "NotSupported",
    "TaskStopTimeout",
    "Unauthorized",
    "Unavailable",
]
