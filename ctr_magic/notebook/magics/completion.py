"""Tab completion for ``%ctr``: subcommands, options, container ids, image refs, mount dirs."""

from __future__ import annotations

import logging
import shlex
import time
from typing import Any

from . import parsing

log = logging.getLogger(__name__)

_CACHE_SECONDS = 2.0


def _words(text: str) -> list[str]:
    """Words of the line up to the cursor; the last is the word being completed ('' after a space)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    words: list[str] = []
    try:
        words.extend(lexer)
    except ValueError:  # an open quote: complete the unfinished word
        words.append(lexer.token)
    if not text or text[-1].isspace():
        words.append("")
    return words


def _magic(shell: Any) -> Any:
    from .core import CtrMagic

    for configurable in getattr(shell, "configurables", []):
        if isinstance(configurable, CtrMagic):
            return configurable
    return None


def _names(magic: Any, kind: str) -> list[str]:
    """Container ids or image names from the daemon (cached briefly; [] when it does not answer)."""
    cache = magic.session.completion_cache
    hit = cache.get(kind)
    now = time.monotonic()
    if hit is not None and now - hit[0] < _CACHE_SECONDS:
        return hit[1]
    names: list[str] = []
    try:
        if kind == "mount":
            names = sorted(magic.session.mounts)
        else:
            service = magic.session.service
            if kind == "container":
                names = sorted(c.id for c in service.list_containers())
            elif kind == "image":
                names = sorted(i.name for i in service.list_images())
    except Exception:  # completion must never raise or print
        log.debug("completion lookup of %s failed", kind, exc_info=True)
    cache[kind] = (now, names)
    return names


def candidates(words: list[str], magic: Any = None) -> list[str]:
    """Completions for the last of ``words`` (``words[0]`` is the first word after ``%ctr``)."""
    current = words[-1]
    before = words[:-1]
    if not before:
        return [n for n in parsing.command_names() if n.startswith(current)]
    registry = parsing.commands()
    if (before[0],) in registry:
        cmd_words: tuple[str, ...] = (before[0],)
        rest = before[1:]
    elif len(before) == 1:
        subs = sorted(w[1] for w in registry if w[0] == before[0] and len(w) == 2)
        return [s for s in subs if s.startswith(current)]
    else:
        cmd_words = (before[0], before[1])
        rest = before[2:]
    cmd = registry.get(cmd_words)
    if cmd is None:
        return []
    if current.startswith("-"):
        return [o for o in parsing.options_of(cmd_words) if o.startswith(current)]
    if "--" in rest:
        return []
    kinds = [cmd.completes] if cmd.completes else []
    if cmd.completes == "container" and cmd_words[0] in ("run", "create"):
        kinds = ["image"]
    if cmd_words[0] == "inspect":
        kinds = ["container", "image"]
    out: list[str] = []
    if magic is not None:
        for kind in kinds:
            out.extend(n for n in _names(magic, kind) if n.startswith(current))
    return out


def complete(shell: Any, event: Any) -> list[str]:
    """IPython ``complete_command`` hook for ``%ctr`` and ``%%ctr``."""
    text = getattr(event, "text_until_cursor", "") or getattr(event, "line", "")
    words = _words(text)
    if not words:
        return []
    if words[0].lstrip("%") == "ctr":
        words = words[1:]
    if not words:
        return []
    current = words[-1]
    symbol = getattr(event, "symbol", current) or ""
    found = candidates(words, _magic(shell))
    # IPython splits words at ':' and '=', so hand back only what follows its idea of the word.
    offset = len(current) - len(symbol)
    return [c[offset:] for c in found if offset >= 0]
