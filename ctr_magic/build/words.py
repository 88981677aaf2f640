"""Dockerfile words: variable expansion (``$VAR``, ``${VAR}``, ``${VAR:-x}``, ``${VAR:+x}``) and
quote removal, the way Docker's builder treats the arguments of ENV, ARG, LABEL, COPY, WORKDIR and
the other non-shell instructions. RUN, CMD and ENTRYPOINT in shell form are left to the shell.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Optional

from .. import errors


class _Lexer:
    def __init__(self, text: str, variables: Mapping[str, str], escape: str = "\\") -> None:
        self.text = text
        self.vars = variables
        self.escape = escape
        self.pos = 0

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _variable(self) -> str:
        """At a ``$``: the expansion (the ``$`` itself when no name follows)."""
        self.pos += 1
        ch = self._peek()
        if ch == "{":
            end = self.text.find("}", self.pos)
            if end < 0:
                raise errors.InvalidArgument(f"missing '}}' in {self.text!r}")
            body = self.text[self.pos + 1:end]
            self.pos = end + 1
            for op in (":-", ":+", "-", "+"):
                if op in body:
                    name, word = body.split(op, 1)
                    value = self.vars.get(name)
                    word = expand(word, self.vars)
                    if op in (":-", "-"):
                        return value if value not in (None, "") or (op == "-" and value is not None) else word
                    return word if value not in (None, "") or (op == "+" and value is not None) else ""
            return self.vars.get(body, "")
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] == "_"):
            self.pos += 1
        name = self.text[start:self.pos]
        return self.vars.get(name, "") if name else "$"

    def words(self, split: bool) -> list[str]:
        out: list[str] = []
        word: list[str] = []
        in_word = False
        quote = ""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if quote == "'":
                if ch == "'":
                    quote = ""
                else:
                    word.append(ch)
                self.pos += 1
                continue
            if ch == self.escape and self.pos + 1 < len(self.text):
                nxt = self.text[self.pos + 1]
                if quote == '"' and nxt not in ('"', "$", self.escape):
                    word.append(ch)
                word.append(nxt)
                in_word = True
                self.pos += 2
                continue
            if ch == "$":
                word.append(self._variable())
                in_word = True
                continue
            if quote == '"':
                if ch == '"':
                    quote = ""
                else:
                    word.append(ch)
                self.pos += 1
                continue
            if ch in "'\"":
                quote = ch
                in_word = True
                self.pos += 1
                continue
            if split and ch.isspace():
                if in_word:
                    out.append("".join(word))
                    word, in_word = [], False
                self.pos += 1
                continue
            word.append(ch)
            in_word = True
            self.pos += 1
        if quote:
            raise errors.InvalidArgument(f"unmatched {quote} in {self.text!r}")
        if in_word or not split:
            out.append("".join(word))
        return out


def expand(text: str, variables: Mapping[str, str]) -> str:
    """*text* with variables expanded and quotes removed (one word, spaces kept)."""
    return _Lexer(text, variables).words(split=False)[0]


def split_words(text: str, variables: Mapping[str, str]) -> list[str]:
    """*text* split at unquoted white space, each word expanded and unquoted."""
    return _Lexer(text, variables).words(split=True)


def json_array(value: str) -> Optional[list[str]]:
    """The exec form ``["a", "b"]`` as a list; None when *value* is not a JSON array of strings."""
    text = value.strip()
    if not text.startswith("["):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
        return parsed
    return None


def key_values(text: str, variables: Mapping[str, str], what: str) -> list[tuple[str, str]]:
    """``K=V K2="v 2"`` (or the old ``K value with spaces`` form) as pairs, expanded."""
    words = split_words(text, variables)
    if not words:
        raise errors.InvalidArgument(f"{what} needs at least one KEY=VALUE")
    if "=" not in words[0]:
        # The legacy form: one key, the rest of the line is its value.
        key, _, rest = text.strip().partition(" ")
        return [(key, expand(rest.strip(), variables))]
    pairs = []
    for word in words:
        if "=" not in word:
            raise errors.InvalidArgument(f"{what}: {word!r} is not KEY=VALUE", hint="write KEY=VALUE pairs")
        key, value = word.split("=", 1)
        pairs.append((key, value))
    return pairs


__all__ = ["expand", "json_array", "key_values", "split_words"]
