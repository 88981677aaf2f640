"""A Dockerfile as stages of instructions, read with the maintained ``dockerfile-parse`` package
(line continuations, comments, the escape directive); this module only adds the build's model:
each instruction's flags (``--chown=...``), stages split at FROM, and one-line errors that name the
line of an instruction the builder does not know.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

from .. import errors

#: What the builder runs or records; anything else is refused with the line it is on.
KNOWN = frozenset({
    "FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "LABEL", "EXPOSE", "VOLUME", "CMD",
    "ENTRYPOINT", "SHELL", "STOPSIGNAL", "HEALTHCHECK", "MAINTAINER", "ONBUILD",
})  # fmt: skip
#: Flags each instruction accepts (``--name=value``).
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "COPY": frozenset({"chown", "from", "chmod"}),
    "ADD": frozenset({"chown", "chmod"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "retries"}),
}
_FLAG = re.compile(r"^--([a-z][a-z-]*)=(.*)$")
_URL = re.compile(r"^\[?[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class Instruction:
    """One instruction: keyword, its text after the flags, the flags, and where it was written."""

    keyword: str
    value: str
    line: int  # 1-based
    flags: dict[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def text(self) -> str:
        """The instruction as one line, for messages and history (``RUN make``)."""
        flags = " ".join(f"--{k}={v}" for k, v in self.flags.items())
        return " ".join(part for part in (self.keyword, flags, self.value) if part)


@dataclass
class Stage:
    """``FROM base [AS name]`` and the instructions up to the next FROM."""

    index: int
    base: str
    name: str
    platform: str
    line: int
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    global_args: list[Instruction]
    stages: list[Stage]

    def stage(self, ref: str) -> Stage:
        """A stage by name (case-insensitive) or index."""
        for stage in self.stages:
            if stage.name and stage.name == ref.lower():
                return stage
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        raise KeyError(ref)


def _split_flags(keyword: str, value: str, line: int) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    rest = value.strip()
    while rest.startswith("--"):
        word, _, remainder = rest.partition(" ")
        match = _FLAG.match(word)
        allowed = FLAGS.get(keyword, frozenset())
        if match is None or match.group(1) not in allowed:
            shown = ", ".join(f"--{f}" for f in sorted(allowed)) or "none"
            raise errors.InvalidArgument(f"Dockerfile line {line}: {keyword} does not take {word.split('=')[0]!r}",
                                         hint=f"flags {keyword} takes: {shown}")
        flags[match.group(1)] = match.group(2)
        rest = remainder.strip()
    return flags, rest


def parse(text: str) -> Dockerfile:
    """Parse Dockerfile *text*; InvalidArgument names the first line the builder cannot take."""
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()), env_replace=False)
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    for item in parser.structure:
        keyword = item["instruction"].upper()
        line = int(item["startline"]) + 1
        if keyword == "COMMENT":
            continue
        source = " ".join(item["content"].split())
        if keyword not in KNOWN:
            raise errors.InvalidArgument(f"Dockerfile line {line}: unknown instruction {keyword} ({source!r})",
                                         hint="known: " + " ".join(sorted(KNOWN - {'MAINTAINER', 'ONBUILD'})))
        if keyword == "ONBUILD":
            raise errors.InvalidArgument(f"Dockerfile line {line}: ONBUILD is not supported by ctr-magic's builder",
                                         hint="remove it, or build with the Docker backend")
        flags, value = _split_flags(keyword, item["value"], line)
        if keyword in ("ADD", "COPY"):
            for word in value.replace('"', " ").replace(",", " ").split():
                if _URL.match(word):
                    raise errors.InvalidArgument(
                        f"Dockerfile line {line}: {keyword} of a remote URL ({word}) is not supported",
                        hint="download it into the build context first, then COPY it")
        instr = Instruction(keyword, value, line, flags, source)
        if keyword == "FROM":
            words = value.split()
            if len(words) == 3 and words[1].lower() == "as":
                base, name = words[0], words[2].lower()
            elif len(words) == 1:
                base, name = words[0], ""
            else:
                raise errors.InvalidArgument(f"Dockerfile line {line}: FROM takes IMAGE [AS NAME], got {value!r}")
            stages.append(Stage(len(stages), base, name, flags.get("platform", ""), line))
        elif not stages:
            if keyword != "ARG":
                raise errors.InvalidArgument(f"Dockerfile line {line}: {keyword} before the first FROM",
                                             hint="a Dockerfile starts with FROM (only ARG may come before it)")
            global_args.append(instr)
        else:
            stages[-1].instructions.append(instr)
    if not stages:
        raise errors.InvalidArgument("the Dockerfile has no FROM instruction", hint="start it with FROM IMAGE")
    return Dockerfile(global_args, stages)


__all__ = ["FLAGS", "KNOWN", "Dockerfile", "Instruction", "Stage", "parse"]
