"""Parsing JSON that came from outside (files, registries, daemons) so only CtrError escapes.

``json.loads`` raises ValueError on bad text and UnicodeDecodeError on bad bytes; a document nested
deeper than the interpreter's stack raises RecursionError, here or in whatever walks it later
(``copy.deepcopy``). Documents from outside are therefore parsed through :func:`load_json`, which
also refuses nesting deeper than any real config or manifest needs.
"""

from __future__ import annotations

import json
from typing import Any, Union

from . import errors

# Real configs and manifests nest fewer than 10 levels; 64 leaves room without nearing the stack limit.
MAX_DEPTH = 64


def nesting_depth(doc: Any, limit: int = MAX_DEPTH) -> int:
    """How deep *doc* nests (scalars are 0); stops counting past *limit*. Iterative: no recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def load_json(data: Union[bytes, str], what: str, *, hint: str = "",
              error: type[errors.CtrError] = errors.InvalidArgument) -> Any:
    """The document in *data*, or *error* saying ``<what> is not valid JSON (...)`` in one line."""
    try:
        doc = json.loads(data)
    except RecursionError:
        raise error(f"{what} is nested too deeply to be a real document", hint=hint) from None
    except (ValueError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"{what} is not valid JSON ({reason[:200]})", hint=hint) from None
    if nesting_depth(doc) > MAX_DEPTH:
        raise error(f"{what} nests more than {MAX_DEPTH} levels deep, more than any real document", hint=hint)
    return doc
