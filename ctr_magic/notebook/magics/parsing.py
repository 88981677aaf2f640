"""Declaring ``%ctr`` subcommands and parsing their arguments.

Each subcommand is a function decorated with :func:`command` and :func:`argument`; the
argparse parser (and so ``--help``) is generated from those declarations. Parsing never
exits the process: usage errors become :class:`~ctr_magic.errors.InvalidArgument` with one
line, and ``--help`` prints the help and stops the command.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import importlib
import inspect
import pkgutil
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Optional

from ...errors import InvalidArgument

PROG = "%ctr"

# Where a subcommand accepts a ``%%ctr`` cell body.
CELL_NEVER = "never"
CELL_OPTIONAL = "optional"


class HelpShown(Exception):
    """``--help`` was printed: the command stops without error."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, and takes no abbreviated options."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise InvalidArgument(f"{message}", hint=f"see {self.prog} --help")

    def exit(self, status: int = 0, message: Optional[str] = None) -> NoReturn:
        if status:
            raise InvalidArgument((message or "invalid arguments").strip())
        raise HelpShown()


@dataclass
class Command:
    """One ``%ctr`` subcommand: its words (``("net", "up")``), handler and argument declarations."""

    words: tuple[str, ...]
    func: Callable[..., Any]
    help: str
    description: str
    arguments: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    cell: str = CELL_NEVER
    completes: str = ""  # "container", "image", "mount" or "" (what the first positional names)

    @property
    def name(self) -> str:
        return " ".join(self.words)


_REGISTRY: dict[tuple[str, ...], Command] = {}
_GROUP_HELP: dict[str, str] = {}


def argument(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare one argparse argument of the subcommand below (like IPython's magic_arguments)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        pending = func.__dict__.setdefault("_ctr_arguments", [])
        pending.insert(0, (args, kwargs))
        return func

    return decorate


def command(
    name: str,
    *,
    help: str,
    cell: str = CELL_NEVER,
    completes: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``func(ctx, args)`` as ``%ctr <name>``; ``name`` may be two words (``"net up"``)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        words = tuple(name.split())
        doc = inspect.cleandoc(func.__doc__ or help)
        _REGISTRY[words] = Command(
            words=words,
            func=func,
            help=help,
            description=doc,
            arguments=list(func.__dict__.get("_ctr_arguments", [])),
            cell=cell,
            completes=completes,
        )
        parser.cache_clear()
        return func

    return decorate


def group_help(word: str, text: str) -> None:
    """Help line of a command group (``net``)."""
    _GROUP_HELP[word] = text


def commands() -> dict[tuple[str, ...], Command]:
    _load_command_modules()
    return dict(_REGISTRY)


# A command module places its commands in the overview with ``HELP_ORDER = <int>``; without it they come last.
_DEFAULT_HELP_ORDER = 1000


def _load_command_modules() -> None:
    """Import every ``cmd_*`` module of this package: importing one registers its commands."""
    package = importlib.import_module(__package__ or __name__.rpartition(".")[0])
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback when it fails"
    )
    return common


DESCRIPTION = """Containers in the notebook. Listings are pandas DataFrames (`df = %ctr images`);
`%%ctr exec BOX -- CMD` feeds the cell body to CMD's stdin. `{var}` and `$var` expand Python values.
Settings: `%config CtrMagic` (backend, socket, namespace, debug, progress, lock_file...)."""


@functools.lru_cache(maxsize=1)
def parser() -> argparse.ArgumentParser:
    """The root parser with one subparser per command (built once)."""
    registry = commands()
    common = _common()
    root = _Parser(
        prog=PROG,
        description=DESCRIPTION,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subs = root.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    groups: dict[str, Any] = {}
    for words, cmd in _in_help_order(registry):
        target = subs
        if len(words) == 2:
            group = groups.get(words[0])
            if group is None:
                group_parser = subs.add_parser(
                    words[0], help=_escape(_GROUP_HELP.get(words[0], "")), parents=[common], prog=f"{PROG} {words[0]}"
                )
                group = groups[words[0]] = group_parser.add_subparsers(
                    dest="subcommand", metavar="SUBCOMMAND", parser_class=_Parser
                )
            target = group
        sub = target.add_parser(
            words[-1],
            help=_escape(cmd.help),
            description=cmd.description,
            parents=[common],
            prog=f"{PROG} {cmd.name}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for args, kwargs in cmd.arguments:
            sub.add_argument(*args, **_escaped(kwargs))
        sub.set_defaults(_command=cmd)
    return root


def _in_help_order(registry: dict[tuple[str, ...], Command]) -> list[tuple[tuple[str, ...], Command]]:
    """The overview's order: by the declaring module's ``HELP_ORDER``, then as the module declares them."""
    declared = list(registry.items())

    def key(item: tuple[tuple[str, ...], Command]) -> tuple[int, str, int]:
        module = item[1].func.__module__
        order = getattr(sys.modules.get(module), "HELP_ORDER", _DEFAULT_HELP_ORDER)
        return (order, module, declared.index(item))

    return sorted(declared, key=key)


def help_text() -> str:
    """The generated overview (``%ctr --help``), also what ``%ctr?`` shows."""
    return parser().format_help()


def _escape(text: str) -> str:
    """argparse %-formats help strings: keep a literal '%' (as in %ctr) literal."""
    return text.replace("%", "%%")


def _escaped(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {**kwargs, "help": _escape(kwargs["help"])} if "help" in kwargs else kwargs


def split_line(line: str) -> list[str]:
    """Shell-like word splitting of a magic line, with a one-line error on unbalanced quotes."""
    try:
        return shlex.split(line, posix=True)
    except ValueError as exc:
        raise InvalidArgument(f"cannot split the line into words: {exc}", hint="check the quotes") from None


@dataclass
class Parsed:
    command: Optional[Command]
    args: argparse.Namespace
    debug: bool


def parse(words: Sequence[str]) -> Parsed:
    """Parse ``%ctr`` words. No command prints the overview (as ``--help`` does)."""
    root = parser()
    if not words:
        root.print_help()
        raise HelpShown()
    first = words[0]
    if not first.startswith("-") and tuple(words[:1]) not in commands() and first not in _group_words():
        close = difflib.get_close_matches(first, command_names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InvalidArgument(f"unknown command {first!r}", hint=hint + f"{PROG} --help lists the commands")
    ns = root.parse_args(list(words))
    cmd: Optional[Command] = getattr(ns, "_command", None)
    if cmd is None:
        group = getattr(ns, "command", None)
        if group in _group_words():
            raise InvalidArgument(
                "a subcommand is missing",
                hint=", ".join(" ".join(w) for w in commands() if w[0] == group),
            )
        root.print_help()
        raise HelpShown()
    return Parsed(cmd, ns, bool(getattr(ns, "debug", False)))


def _group_words() -> set[str]:
    return {w[0] for w in commands() if len(w) == 2}


def command_names() -> list[str]:
    """Top-level words: every single-word command and every group."""
    return sorted({w[0] for w in commands()})


def options_of(words: tuple[str, ...]) -> list[str]:
    """Option strings (``-e``, ``--rm``...) a command accepts, for completion."""
    cmd = commands().get(words)
    if cmd is None:
        return []
    out = ["--help", "--debug"]
    for args, _ in cmd.arguments:
        out.extend(a for a in args if isinstance(a, str) and a.startswith("-"))
    return out
