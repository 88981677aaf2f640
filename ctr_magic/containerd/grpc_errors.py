"""The one place where gRPC failures become CtrError subclasses."""

from __future__ import annotations

import grpc

from .. import errors

_BY_CODE: dict[grpc.StatusCode, type[errors.CtrError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.ABORTED: errors.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthorized,
    grpc.StatusCode.PERMISSION_DENIED: errors.Unauthorized,
    grpc.StatusCode.UNIMPLEMENTED: errors.NotSupported,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.Interrupted,
    grpc.StatusCode.CANCELLED: errors.Interrupted,
}


# What gRPC says when an established connection breaks (as opposed to one that cannot be made).
_WENT_AWAY_MARKERS = ("stream removed", "socket closed", "connection reset", "broken pipe", "goaway",
                      "connection closed", "end of stream")


def went_away(details: str) -> bool:
    """True when *details* say the daemon dropped a connection that was up (a restart), not a failed connect."""
    lowered = details.lower()
    return any(marker in lowered for marker in _WENT_AWAY_MARKERS)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


def map_rpc_error(err: grpc.RpcError, what: str, address: str) -> errors.CtrError:
    """Turn *err* (raised while doing *what*) into a one-line, actionable CtrError."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = _first_line(err.details() if hasattr(err, "details") else str(err)) or code.name.lower()
    if code == grpc.StatusCode.UNAVAILABLE:
        if went_away(details):
            return errors.Unavailable(
                f"{what}: containerd at {address} went away while the call ran ({details})",
                hint="it restarted or stopped; the call can be made again once it is back (`ctr-magic up`)",
            )
        return errors.Unavailable(
            f"cannot reach containerd at {address} ({details})",
            hint="is it running? `ctr-magic up` starts a private one",
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.Interrupted(f"{what}: timed out", hint="raise timeout= or check the daemon's load")
    cls = _BY_CODE.get(code, errors.CtrError)
    return cls(f"{what}: {details}")
