"""What each instruction does to a stage: the image config it changes, or the action it needs
(run a command, copy files, make the working directory). The executors (containerd, Docker) only
carry actions out; the rules of the Dockerfile live here, in one place.
"""

from __future__ import annotations

import copy
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from .. import errors
from .dockerfile import Instruction
from .words import expand, json_array, key_values, split_words

DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Proxy arguments Docker lets every build use without an ARG line.
PREDEFINED_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                             "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_NANOS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


@dataclass(frozen=True)
class RunAction:
    argv: list[str]
    env: list[str]
    user: str
    workdir: str


@dataclass(frozen=True)
class CopyAction:
    sources: list[str]
    dest: str  # absolute; a trailing "/" kept (it means "a directory")
    chown: str
    chmod: str
    from_ref: str
    add: bool


@dataclass(frozen=True)
class MkdirAction:
    path: str


Action = Union[RunAction, CopyAction, MkdirAction, None]


def env_dict(env: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)


def set_env(env: list[str], key: str, value: str) -> list[str]:
    out = [item for item in env if item.split("=", 1)[0] != key]
    position = next((i for i, item in enumerate(env) if item.split("=", 1)[0] == key), len(out))
    out.insert(position, f"{key}={value}")
    return out


def parse_duration(text: str, what: str) -> int:
    """``30s``, ``1m30s`` as nanoseconds (what Docker stores)."""
    total, pos = 0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += int(float(match.group(1)) * _NANOS[match.group(2)])
        pos = match.end()
    if pos != len(text) or not text:
        raise errors.InvalidArgument(f"{what}: {text!r} is not a duration", hint="e.g. 30s, 1m30s")
    return total


@dataclass
class StageState:
    """The stage's image config as it is built up, plus the build arguments it has declared."""

    config: dict[str, Any]
    build_args: dict[str, str]
    global_args: dict[str, str]
    args: dict[str, str] = field(default_factory=dict)
    cmd_set: bool = False
    used_args: set[str] = field(default_factory=set)

    @classmethod
    def from_image(cls, image_config: dict[str, Any], build_args: dict[str, str],
                   global_args: dict[str, str]) -> StageState:
        config = copy.deepcopy(image_config.get("config") or {})
        if not config.get("Env"):
            config["Env"] = [DEFAULT_PATH_ENV]
        return cls(config=config, build_args=build_args, global_args=global_args)

    # -- views ---------------------------------------------------------------------------------------
    @property
    def env(self) -> list[str]:
        return list(self.config.get("Env") or [])

    @property
    def variables(self) -> dict[str, str]:
        """What ``$NAME`` expands to: declared ARGs, overridden by ENV."""
        return {**self.args, **env_dict(self.env)}

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    @property
    def workdir(self) -> str:
        return self.config.get("WorkingDir") or "/"

    def run_env(self) -> list[str]:
        """The RUN environment: the config's Env plus ARG values it does not set itself."""
        env = self.env
        names = {item.split("=", 1)[0] for item in env}
        return env + [f"{k}={v}" for k, v in self.args.items() if k not in names]

    def _command(self, instr: Instruction) -> list[str]:
        exec_form = json_array(instr.value)
        if exec_form is not None:
            return exec_form
        if not instr.value.strip():
            raise errors.InvalidArgument(f"Dockerfile line {instr.line}: {instr.keyword} needs a command")
        return [*self.shell, instr.value]

    # -- one instruction ---------------------------------------------------------------------------------
    def apply(self, instr: Instruction) -> Action:
        """Change the config for *instr*; return what must happen to the files (None: nothing)."""
        try:
            return getattr(self, f"_do_{instr.keyword.lower()}")(instr)
        except errors.CtrError as exc:
            if exc.message.startswith("Dockerfile line"):
                raise
            raise type(exc)(f"Dockerfile line {instr.line} ({instr.source}): {exc.message}", hint=exc.hint) from None

    def _do_run(self, instr: Instruction) -> Action:
        return RunAction(self._command(instr), self.run_env(), self.config.get("User") or "", self.workdir)

    def _do_copy(self, instr: Instruction, add: bool = False) -> Action:
        exec_form = json_array(instr.value)
        words = [expand(w, self.variables) for w in exec_form] if exec_form is not None \
            else split_words(instr.value, self.variables)
        if len(words) < 2:
            raise errors.InvalidArgument(f"{instr.keyword} needs a source and a destination")
        *sources, dest = words
        for source in sources:
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", source):
                raise errors.InvalidArgument(f"{instr.keyword} of a remote URL ({source}) is not supported",
                                             hint="download it into the build context first, then COPY it")
        trailing = dest.endswith("/") or dest in (".", "..")
        absolute = posixpath.normpath(posixpath.join(self.workdir, dest))
        dest = absolute.rstrip("/") + "/" if trailing else absolute
        return CopyAction(sources, dest, expand(instr.flags.get("chown", ""), self.variables),
                          instr.flags.get("chmod", ""), instr.flags.get("from", ""), add)

    def _do_add(self, instr: Instruction) -> Action:
        return self._do_copy(instr, add=True)

    def _do_env(self, instr: Instruction) -> Action:
        env = self.env
        for key, value in key_values(instr.value, self.variables, "ENV"):
            env = set_env(env, key, value)  # every pair expands with the values from before the line
        self.config["Env"] = env
        return None

    def _do_arg(self, instr: Instruction) -> Action:
        for word in split_words(instr.value, {}) if "=" not in instr.value else [instr.value.strip()]:
            name, has_default, default = word.partition("=")
            self.used_args.add(name)
            if has_default:
                default = expand(default, self.variables)
            if name in self.build_args:
                value = self.build_args[name]
            elif name in self.global_args and not has_default:
                value = self.global_args[name]
            elif has_default:
                value = default
            else:
                continue  # declared without a value: not set (Docker leaves it out of RUN's env)
            self.args[name] = value
        return None

    def _do_workdir(self, instr: Instruction) -> Action:
        path = expand(instr.value.strip(), self.variables)
        if not path:
            raise errors.InvalidArgument("WORKDIR needs a path")
        self.config["WorkingDir"] = posixpath.normpath(posixpath.join(self.workdir, path))
        return MkdirAction(self.config["WorkingDir"])

    def _do_user(self, instr: Instruction) -> Action:
        self.config["User"] = expand(instr.value.strip(), self.variables)
        return None

    def _do_label(self, instr: Instruction) -> Action:
        labels = dict(self.config.get("Labels") or {})
        labels.update(key_values(instr.value, self.variables, "LABEL"))
        self.config["Labels"] = labels
        return None

    def _do_maintainer(self, instr: Instruction) -> Action:
        self.config["Author"] = instr.value.strip()  # kept beside the runtime config by the writers
        return None

    def _do_expose(self, instr: Instruction) -> Action:
        ports = dict(self.config.get("ExposedPorts") or {})
        for word in split_words(instr.value, self.variables):
            port, _, proto = word.partition("/")
            if not port.replace("-", "").isdigit():
                raise errors.InvalidArgument(f"EXPOSE: {word!r} is not a port", hint="e.g. EXPOSE 80 53/udp")
            ports[f"{port}/{(proto or 'tcp').lower()}"] = {}
        self.config["ExposedPorts"] = ports
        return None

    def _do_volume(self, instr: Instruction) -> Action:
        paths = json_array(instr.value) or split_words(instr.value, self.variables)
        volumes = dict(self.config.get("Volumes") or {})
        for path in paths:
            volumes[path] = {}
        self.config["Volumes"] = volumes
        return None

    def _do_cmd(self, instr: Instruction) -> Action:
        self.config["Cmd"] = self._command(instr)
        self.cmd_set = True
        return None

    def _do_entrypoint(self, instr: Instruction) -> Action:
        self.config["Entrypoint"] = self._command(instr)
        if not self.cmd_set:
            self.config.pop("Cmd", None)
        return None

    def _do_shell(self, instr: Instruction) -> Action:
        shell = json_array(instr.value)
        if not shell:
            raise errors.InvalidArgument("SHELL takes a JSON array", hint='e.g. SHELL ["/bin/bash", "-c"]')
        self.config["Shell"] = shell
        return None

    def _do_stopsignal(self, instr: Instruction) -> Action:
        self.config["StopSignal"] = expand(instr.value.strip(), self.variables)
        return None

    def _do_healthcheck(self, instr: Instruction) -> Action:
        value = instr.value.strip()
        if value.upper() == "NONE":
            self.config["Healthcheck"] = {"Test": ["NONE"]}
            return None
        keyword, _, rest = value.partition(" ")
        if keyword.upper() != "CMD":
            raise errors.InvalidArgument("HEALTHCHECK takes NONE or [OPTIONS] CMD command")
        exec_form = json_array(rest)
        check: dict[str, Any] = {"Test": ["CMD", *exec_form] if exec_form is not None else ["CMD-SHELL", rest]}
        for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod")):
            if flag in instr.flags:
                check[key] = parse_duration(instr.flags[flag], f"HEALTHCHECK --{flag}")
        if "retries" in instr.flags:
            check["Retries"] = int(instr.flags["retries"])
        self.config["Healthcheck"] = check
        return None


def global_arg_values(instructions: list[Instruction], build_args: dict[str, str]) -> dict[str, str]:
    """The ARGs before the first FROM, with --build-arg overrides (usable in FROM lines)."""
    values: dict[str, str] = {}
    for instr in instructions:
        name, has_default, default = instr.value.strip().partition("=")
        if name in build_args:
            values[name] = build_args[name]
        elif has_default:
            values[name] = expand(default, values)
    return values


def from_reference(base: str, global_args: dict[str, str]) -> str:
    return expand(base, global_args)


def unused_build_args(build_args: dict[str, str], used: set[str]) -> list[str]:
    return sorted(name for name in build_args if name not in used and name not in PREDEFINED_ARGS)


def history_entry(instr: Instruction, created: str, empty: bool, action: Optional[Action] = None) -> dict[str, Any]:
    if isinstance(action, RunAction):
        by = f"RUN {' '.join(action.argv) if json_array(instr.value) is None else instr.value}"
    else:
        by = instr.text
    entry: dict[str, Any] = {"created": created, "created_by": f"{by} # ctr-magic build"}
    if empty:
        entry["empty_layer"] = True
    return entry


__all__ = ["Action", "CopyAction", "MkdirAction", "RunAction", "StageState", "env_dict", "from_reference",
           "global_arg_values", "history_entry", "parse_duration", "unused_build_args"]
