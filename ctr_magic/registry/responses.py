"""Reading a registry's answers: its JSON error list, and one-line wording for failures."""

from __future__ import annotations

import json
from typing import Any, Optional

import httpx

from ..reference import Reference


def _registry_errors(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        doc = json.loads(response.read() or b"{}")
    except (ValueError, httpx.HTTPError):
        return []
    found = doc.get("errors") if isinstance(doc, dict) else None
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def error_codes(response: httpx.Response) -> set[str]:
    return {str(e.get("code", "")).upper() for e in _registry_errors(response)}


def error_text(response: httpx.Response) -> str:
    messages = [str(e.get("message") or e.get("code") or "") for e in _registry_errors(response)]
    return "; ".join(m for m in messages if m)[:200]


def not_found_message(ref: Reference, reference: str, codes: set[str], tags: Optional[list[str]]) -> str:
    shown = str(ref)
    if "NAME_UNKNOWN" in codes or tags is None:
        return f"image {shown} not found: registry {ref.domain} has no repository {ref.path!r}"
    if reference.startswith("sha256:"):
        return f"image {shown} not found: repository {ref.path!r} has no manifest {reference}"
    known = ", ".join(tags[:8]) + (", ..." if len(tags) > 8 else "") if tags else "none"
    return f"image {shown} not found: repository {ref.path!r} has no tag {reference!r} (tags: {known})"


def describe(exc: Optional[BaseException]) -> str:
    if exc is None:
        return "no answer"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["describe", "error_codes", "error_text", "not_found_message"]
