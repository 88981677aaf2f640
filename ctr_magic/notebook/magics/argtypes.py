"""Parsing of option values (``-v``, ``-e``, ``--label``, signals): one-line errors, no side effects."""

from __future__ import annotations

import os
import re
import signal as _signal
from collections.abc import Iterable, Mapping

from ...errors import InvalidArgument
from ...types import MountSpec

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*\Z")


def parse_volume(spec: str, *, cwd: str | None = None) -> MountSpec:
    """``SRC:DST[:ro|rw]`` -> a bind MountSpec. SRC must exist on the host; DST must be absolute."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InvalidArgument(f"volume {spec!r} is not SRC:DST[:ro]", hint="e.g. -v ./data:/data:ro")
    src, dst = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise InvalidArgument(f"volume {spec!r}: mode {mode!r} is neither ro nor rw")
    if not dst.startswith("/"):
        raise InvalidArgument(f"volume {spec!r}: destination {dst!r} must be an absolute path in the container")
    host = os.path.abspath(os.path.join(cwd or os.getcwd(), os.path.expanduser(src)))
    if not os.path.exists(host):
        raise InvalidArgument(f"volume {spec!r}: host path {host} does not exist", hint="create it first")
    return MountSpec(destination=os.path.normpath(dst), type="bind", source=host, options=["rbind", mode])


def parse_env(items: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """``KEY=VALUE`` stays; a bare ``KEY`` takes the host's value (so secrets need not be typed)."""
    environ = os.environ if environ is None else environ
    out = []
    for item in items:
        key, eq, value = item.partition("=")
        if not _ENV_NAME.match(key):
            raise InvalidArgument(f"environment variable name {key!r} is invalid", hint="use -e NAME=VALUE")
        if not eq:
            if key not in environ:
                raise InvalidArgument(
                    f"-e {key}: no such variable in the kernel's environment", hint=f"use -e {key}=VALUE"
                )
            value = environ[key]
        out.append(f"{key}={value}")
    return out


def parse_labels(items: Iterable[str], *, allow_bare: bool = False) -> dict[str, str]:
    """``k=v`` pairs -> dict; with ``allow_bare``, ``k`` alone means any value (``""``)."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key or not _LABEL_KEY.match(key) or (not eq and not allow_bare):
            raise InvalidArgument(f"label {item!r} is not KEY=VALUE")
        out[key] = value
    return out


def parse_signal(value: str) -> int:
    """``9``, ``KILL`` or ``SIGKILL`` -> 9."""
    text = value.strip().upper()
    if text.isdigit():
        number = int(text)
        if 0 < number < 65:
            return number
        raise InvalidArgument(f"signal number {value!r} is out of range")
    name = text if text.startswith("SIG") else "SIG" + text
    try:
        return int(getattr(_signal.Signals, name))
    except AttributeError:
        raise InvalidArgument(f"unknown signal {value!r}", hint="e.g. TERM, KILL, INT, HUP or a number") from None


def parse_duration(value: str) -> float:
    """``10``, ``2.5s``, ``500ms`` or ``1m`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", value)
    if not m:
        raise InvalidArgument(f"duration {value!r} is not a number of seconds", hint="e.g. 10, 2.5s, 500ms, 1m")
    number, unit = float(m.group(1)), m.group(2) or "s"
    return number / 1000 if unit == "ms" else number * 60 if unit == "m" else number


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,75}\Z")


def check_id(value: str, what: str = "container id") -> str:
    """containerd's identifier rules: letters, digits, '.', '_', '-'; starts alphanumeric; ≤ 76."""
    if not _ID.match(value):
        raise InvalidArgument(
            f"{what} {value!r} is invalid", hint="use letters, digits, '.', '_' and '-', starting with a letter"
        )
    return value
