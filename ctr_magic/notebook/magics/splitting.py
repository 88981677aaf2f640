"""Shell-like word splitting of a magic line in linear time.

The rules are ``shlex.split(line)``'s (POSIX mode, no comments): blanks are space, tab, CR and LF;
a backslash outside quotes takes the next character as is; single quotes take everything up to the
next one; inside double quotes a backslash escapes only ``"`` and ``\\``. shlex builds each word
one character at a time (quadratic on a long word); this scans with one regular expression.
"""

from __future__ import annotations

import re

from ...errors import InvalidArgument

_PIECE = re.compile(
    r"""(?P<blank>[ \t\r\n]+)
      | '(?P<single>[^']*)'
      | "(?P<double>[^"\\]*(?:\\.[^"\\]*)*)"
      | \\(?P<escaped>.)
      | (?P<plain>[^ \t\r\n'"\\]+)
      | (?P<bad>.)""",
    re.VERBOSE | re.DOTALL,
)
_DOUBLE_ESCAPE = re.compile(r'\\([\\"])')


def split_words(line: str) -> list[str]:
    """The words of *line*; InvalidArgument (one line) on an unclosed quote or a trailing backslash."""
    words: list[str] = []
    current: list[str] = []
    in_word = False
    for match in _PIECE.finditer(line):
        kind = match.lastgroup
        if kind == "blank":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
            continue
        if kind == "bad":
            reason = "No escaped character" if match.group() == "\\" else "No closing quotation"
            raise InvalidArgument(f"cannot split the line into words: {reason}", hint="check the quotes")
        text = match.group(kind)  # type: ignore[arg-type]
        if kind == "double":
            text = _DOUBLE_ESCAPE.sub(r"\1", text)
        current.append(text)
        in_word = True
    if in_word:
        words.append("".join(current))
    return words
