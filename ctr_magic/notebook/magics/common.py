"""Helpers more than one command module uses (exit reports, command lines, the bridge network).

Command modules import these from here, never from each other.
"""

from __future__ import annotations

import shlex
from typing import Any, Optional

from ... import features
from ...errors import CtrError, InvalidArgument
from ...types import NetworkSetupRequest
from .context import Context


class CommandFailed(CtrError):
    """A process in a container exited with a non-zero status (raised with --check)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def strip_dashes(cmd: list[str]) -> list[str]:
    """The command after an optional leading ``--``."""
    return cmd[1:] if cmd[:1] == ["--"] else cmd


def shown(args: list[str], limit: int = 60) -> str:
    """A command line as people would type it, shortened for one-line messages."""
    text = shlex.join(args)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def report_exit(ctx: Context, what: str, code: int, check: bool, *, reason: str = "") -> None:
    """A non-zero exit: one red line, or a failed cell with ``--check``; *reason* says why (an OOM kill)."""
    if code == 0:
        return
    message = f"{what} {reason}, exit code {code}" if reason else f"{what} exited with code {code}"
    if check:
        raise CommandFailed(message, code)
    ctx.warn(f"%ctr {ctx.command}: {message}")


def network_request(ctx: Context, container_id: str) -> NetworkSetupRequest:
    """CNI plugins from the host (containernetworking-plugins); configs from ``%config
    CtrMagic.cni_conf_dir``, or the backend's default bridge network when that is empty."""
    from ...env import cni_bin_dir

    return NetworkSetupRequest(container_id=container_id, cni_bin_dir=cni_bin_dir(),
                               cni_conf_dir=ctx.magic.cni_conf_dir)


def setup_network(ctx: Context, container_id: str) -> str:
    service = ctx.service
    service.setup_network(network_request(ctx, container_id))
    ip = service.container_ip(container_id) if features.supports(service, features.ContainerAddresses) else ""
    ctx.say(f"{container_id} is on the bridge network" + (f" at {ip}" if ip else ""))
    return ip


def remove_network(ctx: Context, container_id: str) -> None:
    ctx.service.remove_network(network_request(ctx, container_id))


def stdin_data(ctx: Context, args: Any) -> Optional[bytes]:
    """The cell body or the variable ``--stdin NAME`` as bytes; None when neither is given."""
    if args.stdin and ctx.cell is not None:
        raise InvalidArgument("--stdin and a cell body both give stdin", hint="use one of them")
    if ctx.cell is not None:
        return ctx.cell.encode()
    if not args.stdin:
        return None
    value = ctx.lookup(args.stdin)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    read = getattr(value, "read", None)
    if read is not None:
        data = read()
        return data.encode() if isinstance(data, str) else bytes(data)
    raise InvalidArgument(f"--stdin {args.stdin}: a {type(value).__name__} is not str, bytes or a file")
