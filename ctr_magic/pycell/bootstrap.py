"""How the agent gets into the container: a one-line ``python3 -c`` that reads its real source from stdin.

The command line stays short (it shows in ``ps``); the agent and the wire module travel as one
length-prefixed script on the exec's stdin, before any frame.
"""

from __future__ import annotations

import functools
from pathlib import Path

#: Reads one length-prefixed script from stdin and runs it; the only code on the command line.
BOOTSTRAP = (
    "import sys;b=sys.stdin.buffer;n=int(b.readline());"
    "exec(compile(b.read(n).decode('utf-8'),'<ctr-magic-agent>','exec'))"
)

_LOADER = '''import sys, types


def _load(name, source):
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(source, name, "exec"), module.__dict__)
    return module


_load("ctr_magic_columns", {columns!r})
_load("ctr_magic_wire", {wire!r})
_load("ctr_magic_agent", {agent!r}).main()
'''


@functools.lru_cache(maxsize=1)
def agent_script() -> bytes:
    """The script the bootstrap runs: the columns and wire modules and the agent, installed as modules."""
    here = Path(__file__).parent
    sources = {name: (here / f"{name}.py").read_text(encoding="utf-8") for name in ("columns", "wire", "agent")}
    return _LOADER.format(**sources).encode("utf-8")


def agent_command(python: str = "python3") -> list[str]:
    """The exec's argv: unbuffered *python*, running the bootstrap."""
    return [python, "-u", "-c", BOOTSTRAP]


def agent_stdin_prefix() -> bytes:
    """What the kernel writes first: the script's length on a line, then the script."""
    script = agent_script()
    return str(len(script)).encode() + b"\n" + script
