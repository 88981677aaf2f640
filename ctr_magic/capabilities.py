"""What each backend can do: declared once here, checked by the conformance suite, shown in README.

``python3 -m ctr_magic.capabilities`` prints the README tables: the behaviour of the contract's
methods (declared below), then the features beyond the contract, generated from
:data:`ctr_magic.features.FEATURES` and the methods each backend class really has. The conformance tests
(``tests/conformance``) look every difference up here: where a capability is declared ``NO``
they expect ``NotSupported`` (or the declared behaviour), never a silent skip.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .constants import BACKEND_APPLE, BACKEND_CONTAINERD, BACKEND_DOCKER

BACKENDS = (BACKEND_CONTAINERD, BACKEND_DOCKER, BACKEND_APPLE)


class Support(enum.Enum):
    YES = "yes"
    PARTIAL = "partial"
    NO = "no"


@dataclass(frozen=True)
class Capability:
    key: str
    title: str


@dataclass(frozen=True)
class Entry:
    support: Support
    note: str = ""


CAPABILITIES: tuple[Capability, ...] = (
    Capability("pull.progress", "pull progress per layer"),
    Capability("pull.no_unpack", "pull without unpacking (`unpack=False`)"),
    Capability("pull.platform", "pull another platform (`platform=`)"),
    Capability("image.digest_id", "`ImageInfo.id` is the manifest/index digest"),
    Capability("create.snapshotter", "choose snapshotter / snapshot key at create"),
    Capability("create.mounts", "bind and tmpfs mounts"),
    Capability("task.created_info", "task info of a created, never started container"),
    Capability("stop.timeout_error", "`stop_container` without `force` raises `TaskStopTimeout`"),
    Capability("delete_task", "`delete_task` removes a stopped task"),
    Capability("delete.running_refused", "deleting a running container without `force` is refused"),
    Capability("exec.env_workdir_user", "exec with env, working dir and user"),
    Capability("exec.stdin", "exec with stdin (bytes, str, file)"),
    Capability("exec.stderr", "exec stdout and stderr kept apart"),
    Capability("exec.streaming", "streaming exec session (`exec_task_streaming`)"),
    Capability("exec.terminal", "exec with a terminal"),
    Capability("exec.start_error", "a missing command raises an error (not an exit code)"),
    Capability("exec.kill_on_interrupt", "Ctrl-C kills the exec process"),
    Capability("logs", "container logs (`logs`)"),
    Capability("list_tasks.filter", "`list_tasks` filter (containerd syntax)"),
    Capability("network", "`setup_network` / `remove_network`"),
    Capability("snapshots", "snapshots (commit, list, prepare, mounts, create from snapshot)"),
    Capability("namespaces", "namespaces"),
    Capability("build", "build from a Dockerfile (`%%ctr build`, `build_image`)"),
    Capability("py.cells", "Python cells (`%%ctr py`) over the exec stream"),
    Capability("limits.create", "resource limits at create (memory, CPUs, pids, /dev/shm, rlimits, read-only)"),
    Capability("limits.update", "new limits for a running container (`%ctr update`)"),
    Capability("limits.oom_report", "an OOM kill reported as such (not a bare exit code 137)"),
)

TABLE: dict[str, dict[str, Entry]] = {
    BACKEND_CONTAINERD: {
        "pull.progress": Entry(Support.YES, "bytes per blob, from our own fetch"),
        "pull.no_unpack": Entry(Support.YES),
        "pull.platform": Entry(Support.YES),
        "image.digest_id": Entry(Support.YES),
        "create.snapshotter": Entry(Support.YES),
        "create.mounts": Entry(Support.YES),
        "task.created_info": Entry(Support.NO, "no task exists before start: `NotFound`"),
        "stop.timeout_error": Entry(Support.YES),
        "delete_task": Entry(Support.YES),
        "delete.running_refused": Entry(Support.YES, "`FailedPrecondition`"),
        "exec.env_workdir_user": Entry(Support.YES),
        "exec.stdin": Entry(Support.YES),
        "exec.stderr": Entry(Support.YES),
        "exec.streaming": Entry(Support.YES),
        "exec.terminal": Entry(Support.YES),
        "exec.start_error": Entry(Support.YES),
        "exec.kill_on_interrupt": Entry(Support.YES),
        "logs": Entry(Support.PARTIAL, "only for tasks started with `log_path`; written by the shim, complete up "
                      "to the last byte of stderr (containerd 1.6's `file://` URI would drop it)"),
        "list_tasks.filter": Entry(Support.YES),
        "network": Entry(Support.YES, "CNI plugins"),
        "snapshots": Entry(Support.YES, "a container's snapshot goes before its record, so containerd 1.6's GC "
                           "cannot strand a checkpoint version, and `remove_snapshot` clears a version stranded "
                           "before"),
        "namespaces": Entry(Support.YES),
        "build": Entry(Support.YES, "ctr-magic's own builder: steps on snapshots, a layer cache per step, RUN's "
                       "stdout and stderr apart, a network only with `--net`"),
        "py.cells": Entry(Support.YES),
        "limits.create": Entry(Support.YES, "OCI `linux.resources` (cgroup v1 fields; v2 `unified` too on a v2 "
                               "host); `/sys/fs/cgroup` mounted read-only when limits are set"),
        "limits.update": Entry(Support.YES, "`Tasks.Update`, kept in the container's spec for its next start"),
        "limits.oom_report": Entry(Support.YES, "from the cgroup's OOM-kill counter, read before the task goes"),
    },
    BACKEND_DOCKER: {
        "pull.progress": Entry(Support.YES, "per layer; layers named by Docker's short ids"),
        "pull.no_unpack": Entry(Support.NO, "Docker always unpacks: the option is ignored"),
        "pull.platform": Entry(Support.YES),
        "image.digest_id": Entry(Support.YES, "from `RepoDigests` (the config digest for local-only images)"),
        "create.snapshotter": Entry(Support.NO, "Docker's storage driver decides; the options are ignored"),
        "create.mounts": Entry(Support.YES, "bind, tmpfs, volume"),
        "task.created_info": Entry(Support.YES, "status `created` (the task is the container's state)"),
        "stop.timeout_error": Entry(Support.YES, "kill + wait, as the contract says"),
        "delete_task": Entry(Support.NO, "no task object: a no-op once stopped (kills with `force`)"),
        "delete.running_refused": Entry(Support.YES, "`FailedPrecondition`"),
        "exec.env_workdir_user": Entry(Support.YES),
        "exec.stdin": Entry(Support.YES, "hijacked connection, half-closed at the end"),
        "exec.stderr": Entry(Support.YES),
        "exec.streaming": Entry(Support.YES),
        "exec.terminal": Entry(Support.YES),
        "exec.start_error": Entry(Support.YES, "read from Docker's exit code 126/127 with no pid"),
        "exec.kill_on_interrupt": Entry(Support.PARTIAL, "the API cannot kill an exec: only a local daemon's"),
        "logs": Entry(Support.YES, "Docker keeps every container's log"),
        "list_tasks.filter": Entry(Support.YES, "evaluated by ctr-magic"),
        "network": Entry(Support.NO, "Docker wires networks at create: the calls only check the container"),
        "snapshots": Entry(Support.NO, "`NotSupported`: the Engine API has no snapshots"),
        "namespaces": Entry(Support.NO),
        "build": Entry(Support.PARTIAL, "the Engine's own builder (`/build`); RUN's stdout and stderr arrive as one "
                       "stream"),
        "py.cells": Entry(Support.YES),
        "limits.create": Entry(Support.YES, "HostConfig"),
        "limits.update": Entry(Support.YES, "`POST /containers/{id}/update`"),
        "limits.oom_report": Entry(Support.YES, "from `State.OOMKilled`"),
    },
    BACKEND_APPLE: {
        "pull.progress": Entry(Support.PARTIAL, "socktainer reports one combined bar, not per layer"),
        "pull.no_unpack": Entry(Support.NO, "the option is ignored"),
        "pull.platform": Entry(Support.YES),
        "image.digest_id": Entry(Support.YES),
        "create.snapshotter": Entry(Support.NO, "the options are ignored"),
        "create.mounts": Entry(Support.YES),
        "task.created_info": Entry(Support.YES, "status `created`, from the container state"),
        "stop.timeout_error": Entry(Support.NO, "socktainer's stop kills after `t` seconds itself"),
        "delete_task": Entry(Support.NO, "a no-op (kills with `force`), as the reference"),
        "delete.running_refused": Entry(Support.NO, "delete is always forced, as the reference"),
        "exec.env_workdir_user": Entry(Support.YES, "socktainer ≥ 1.1.0; the reference could not"),
        "exec.stdin": Entry(Support.YES, "socktainer ≥ 1.1.0; the reference could not"),
        "exec.stderr": Entry(Support.YES, "the reference merged them"),
        "exec.streaming": Entry(Support.YES, "the reference had none"),
        "exec.terminal": Entry(Support.YES),
        "exec.start_error": Entry(Support.YES),
        "exec.kill_on_interrupt": Entry(Support.NO, "the process runs in a VM the API cannot signal"),
        "logs": Entry(Support.PARTIAL, "every line arrives as stdout"),
        "list_tasks.filter": Entry(Support.YES, "evaluated by ctr-magic"),
        "network": Entry(Support.NO, "no-ops, as the reference"),
        "snapshots": Entry(Support.NO, "`NotSupported`, as the reference"),
        "namespaces": Entry(Support.NO),
        "build": Entry(Support.PARTIAL, "sent to `/build` as on Docker; socktainer's support of it is unverified"),
        "py.cells": Entry(Support.PARTIAL, "the interrupt travels over stdin and works; an agent stuck past it "
                          "cannot be killed from outside the VM"),
        "limits.create": Entry(Support.PARTIAL, "sent as HostConfig; what socktainer applies is unverified"),
        "limits.update": Entry(Support.PARTIAL, "sent to `/containers/{id}/update`; unverified on socktainer"),
        "limits.oom_report": Entry(Support.PARTIAL, "from `State.OOMKilled`, if socktainer sets it"),
    },
}

_KEYS = {cap.key for cap in CAPABILITIES}


def entry(backend: str, key: str) -> Entry:
    """The declared support of *key* on *backend* (KeyError names what is undeclared)."""
    if key not in _KEYS:
        raise KeyError(f"unknown capability {key!r}")
    return TABLE[backend][key]


def supports(backend: str, key: str) -> bool:
    """True for YES and PARTIAL."""
    return entry(backend, key).support is not Support.NO


_MARK = {Support.YES: "✅", Support.PARTIAL: "◐", Support.NO: "—"}


def render_markdown() -> str:
    """The README's capability table: one row per capability, one column per backend."""
    names = {BACKEND_CONTAINERD: "containerd", BACKEND_DOCKER: "Docker", BACKEND_APPLE: "Apple (socktainer)"}
    lines = [
        "| capability | " + " | ".join(names[b] for b in BACKENDS) + " |",
        "|---|" + "---|" * len(BACKENDS),
    ]
    for cap in CAPABILITIES:
        cells = []
        for backend in BACKENDS:
            item = TABLE[backend][cap.key]
            note = f" {item.note}" if item.note else ""
            cells.append(f"{_MARK[item.support]}{note}")
        lines.append(f"| {cap.title} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("✅ supported · ◐ partly (see note) · — not supported (`NotSupported` or the behaviour noted)")
    lines.append("")
    lines.append(
        "The Apple column is what ctr-magic asks of socktainer; the conformance suite checks it on Linux against a "
        "stand-in (a private dockerd on socktainer's socket), not against socktainer on a Mac."
    )
    return "\n".join(lines) + "\n"


def backend_classes() -> dict[str, type]:
    """The class behind each backend name (imported here, when asked: containerd pulls in gRPC)."""
    from .apple import AppleService
    from .containerd.service import DefaultService
    from .docker.service import DockerService

    return {BACKEND_CONTAINERD: DefaultService, BACKEND_DOCKER: DockerService, BACKEND_APPLE: AppleService}


def feature_table() -> dict[str, dict[str, Entry]]:
    """backend -> feature title -> support, from the Protocols in :mod:`ctr_magic.features`.

    A backend supports a feature when its class has every method of the Protocol; the note is
    the feature's note for that backend (or, when missing, its way out).
    """
    from .features import FEATURES, implemented_by

    out: dict[str, dict[str, Entry]] = {}
    for backend, cls in backend_classes().items():
        row: dict[str, Entry] = {}
        for item in FEATURES:
            notes = dict(item.notes)
            # The Apple backend is the Docker one on socktainer: Docker's notes hold for it too.
            note = notes.get(backend) or (notes.get(BACKEND_DOCKER, "") if backend == BACKEND_APPLE else "")
            if implemented_by(cls, item.protocol):
                row[item.title] = Entry(Support.YES, note)
            else:
                row[item.title] = Entry(Support.NO, item.way_out)
        out[backend] = row
    return out


def render_features_markdown() -> str:
    """README's table of the features beyond the contract: one row per feature, with its commands."""
    from .features import FEATURES

    table = feature_table()
    names = {BACKEND_CONTAINERD: "containerd", BACKEND_DOCKER: "Docker", BACKEND_APPLE: "Apple (socktainer)"}
    lines = [
        "| feature | `%ctr` commands | " + " | ".join(names[b] for b in BACKENDS) + " |",
        "|---|---|" + "---|" * len(BACKENDS),
    ]
    elsewhere: list[str] = []
    for item in FEATURES:
        if all(table[backend][item.title].support is Support.NO for backend in BACKENDS):
            elsewhere.append(item.title)  # a cluster feature: one line under the table, not three refusals
            continue
        cells = []
        for backend in BACKENDS:
            got = table[backend][item.title]
            cells.append(_MARK[got.support] + (f" {got.note}" if got.note else ""))
        commands = ", ".join(f"`{c}`" for c in item.commands)
        lines.append(f"| {item.title} | {commands} | " + " | ".join(cells) + " |")
    if elsewhere:
        lines.append("")
        lines.append("Only on the swarm backend (the others answer `NotSupported` with the way out): "
                     + ", ".join(elsewhere) + ".")
    return "\n".join(lines) + "\n"


def _check() -> None:
    for backend in BACKENDS:
        missing = _KEYS - set(TABLE[backend])
        extra = set(TABLE[backend]) - _KEYS
        if missing or extra:
            raise AssertionError(f"capability table of {backend}: missing {sorted(missing)}, unknown {sorted(extra)}")


_check()

README_BEGIN = "<!-- capabilities: generated by `python3 -m ctr_magic.capabilities --update README.md` -->"
README_END = "<!-- end of generated capabilities -->"


def render_readme_section() -> str:
    """Both tables, between the markers README.md keeps them in."""
    lead = ("Beyond the contract, each feature is a small Protocol in `ctr_magic/features.py`; a backend has it when "
            "its class has the methods, and a `%ctr` command that needs a missing one fails with one `NotSupported` "
            "line and the way out:")
    return f"{README_BEGIN}\n{render_markdown()}\n{lead}\n\n{render_features_markdown()}{README_END}"


def update_readme(path: str) -> bool:
    """Rewrite the generated section of the README at *path*; True when it changed."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    new = text[:start] + render_readme_section() + text[end:]
    if new != text:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(new)
    return new != text


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--update"]:
        target = sys.argv[2] if len(sys.argv) > 2 else "README.md"
        print(f"{target}: {'updated' if update_readme(target) else 'already current'}")
    else:
        print(render_markdown())
        print(render_features_markdown(), end="")


__all__ = ["BACKENDS", "CAPABILITIES", "TABLE", "Capability", "Entry", "Support", "backend_classes", "entry",
           "feature_table", "render_features_markdown", "render_markdown", "render_readme_section", "supports",
           "update_readme"]
