"""Our protos/ must be wire-identical to containerd's upstream API protos.

Upstream comes from the Debian package golang-github-containerd-containerd-dev
(/usr/share/gocode/src/github.com/containerd/containerd/api, containerd 1.6), and, for the
cgroup metrics a task's Metrics call carries, golang-github-containerd-cgroups-dev
(.../containerd/cgroups/stats/v1 and v2/stats).
Both trees are compiled with grpc_tools.protoc into FileDescriptorSets; every
message, enum and service that we define must exist upstream under the same
full name with identical fields (name, number, type, type_name, label,
map-ness, oneof), enum values and RPCs (types and streaming flags). gogo
options such as customname/nullable/embed/stdtime do not affect the wire
format and are ignored.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("grpc_tools", reason="grpcio-tools is needed to compile the protos")

from google.protobuf import descriptor_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]
OUR_PROTOS = REPO_ROOT / "protos"
GOCODE_SRC = Path(os.environ.get("CTR_MAGIC_GOCODE_SRC", "/usr/share/gocode/src"))
UPSTREAM_API = GOCODE_SRC / "github.com" / "containerd" / "containerd" / "api"
UPSTREAM_CGROUPS = GOCODE_SRC / "github.com" / "containerd" / "cgroups"
UPSTREAM_CGROUP_METRICS = [
    UPSTREAM_CGROUPS / "stats" / "v1" / "metrics.proto",
    UPSTREAM_CGROUPS / "v2" / "stats" / "metrics.proto",
]
UPSTREAM_INCLUDES = [
    GOCODE_SRC,  # github.com/containerd/containerd/...
    GOCODE_SRC / "github.com" / "gogo" / "protobuf",  # gogoproto/gogo.proto
    GOCODE_SRC / "github.com" / "gogo" / "googleapis",  # google/rpc/status.proto
]

FDP = descriptor_pb2.FieldDescriptorProto


def _grpc_include() -> Path:
    import grpc_tools

    return Path(grpc_tools.__file__).resolve().parent / "_proto"


def compile_descriptor_set(
    includes: list[Path], files: list[Path], out: Path
) -> descriptor_pb2.FileDescriptorSet:
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"--proto_path={_grpc_include()}"]
    cmd += [f"--proto_path={inc}" for inc in includes]
    cmd += [f"--descriptor_set_out={out}", "--include_imports", *map(str, files)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"protoc failed:\n{' '.join(cmd)}\n{proc.stderr}"
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(out.read_bytes())
    return fds


# --------------------------------------------------------------------------- index


class Index:
    """Messages, enums and services of a FileDescriptorSet by full name (no leading dot)."""

    def __init__(self, fds: descriptor_pb2.FileDescriptorSet, only_files: set[str] | None = None):
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.services: dict[str, descriptor_pb2.ServiceDescriptorProto] = {}
        # Names defined by the selected files (all files when only_files is None).
        self.defined: list[tuple[str, str]] = []  # (kind, full name)
        for f in fds.file:
            selected = only_files is None or f.name in only_files
            prefix = f.package + "." if f.package else ""
            for m in f.message_type:
                self._add_message(prefix + m.name, m, selected)
            for e in f.enum_type:
                self._add_enum(prefix + e.name, e, selected)
            for s in f.service:
                self.services[prefix + s.name] = s
                if selected:
                    self.defined.append(("service", prefix + s.name))

    def _add_message(self, name, msg, selected):
        self.messages[name] = msg
        if selected:
            self.defined.append(("message", name))
        for nested in msg.nested_type:
            self._add_message(f"{name}.{nested.name}", nested, selected)
        for e in msg.enum_type:
            self._add_enum(f"{name}.{e.name}", e, selected)

    def _add_enum(self, name, enum, selected):
        self.enums[name] = enum
        if selected:
            self.defined.append(("enum", name))

    def is_map(self, field: descriptor_pb2.FieldDescriptorProto) -> bool:
        if field.label != FDP.LABEL_REPEATED or field.type != FDP.TYPE_MESSAGE:
            return False
        entry = self.messages.get(field.type_name.lstrip("."))
        return bool(entry and entry.options.map_entry)


# --------------------------------------------------------------------------- comparator


def _field_signature(index: Index, msg: descriptor_pb2.DescriptorProto, field) -> dict:
    return {
        "number": field.number,
        "type": FDP.Type.Name(field.type),
        "type_name": field.type_name,  # fully qualified (".pkg.Name") after protoc resolution
        "label": FDP.Label.Name(field.label),
        "map": index.is_map(field),
        "oneof": msg.oneof_decl[field.oneof_index].name if field.HasField("oneof_index") else None,
        "proto3_optional": field.proto3_optional,
    }


def compare(ours: Index, upstream: Index, *, complete: bool = True) -> list[str]:
    """Every difference between what `ours` defines and `upstream`, as readable lines.

    With complete=True, fields / enum values / RPCs that upstream has but we lack
    are reported too (we define full messages and services).
    """
    problems: list[str] = []
    for kind, name in ours.defined:
        if kind == "message":
            mine, theirs = ours.messages[name], upstream.messages.get(name)
            if theirs is None:
                problems.append(f"message {name}: not defined upstream")
                continue
            their_fields = {f.name: f for f in theirs.field}
            for field in mine.field:
                other = their_fields.get(field.name)
                if other is None:
                    problems.append(f"field {name}.{field.name}: not defined upstream")
                    continue
                a = _field_signature(ours, mine, field)
                b = _field_signature(upstream, theirs, other)
                for key in a:
                    if a[key] != b[key]:
                        problems.append(
                            f"field {name}.{field.name}: {key} is {a[key]!r}, upstream {b[key]!r}"
                        )
            if complete:
                my_names = {f.name for f in mine.field}
                for field in theirs.field:
                    if field.name not in my_names:
                        problems.append(f"field {name}.{field.name} (#{field.number}): missing in ours")
        elif kind == "enum":
            mine, theirs = ours.enums[name], upstream.enums.get(name)
            if theirs is None:
                problems.append(f"enum {name}: not defined upstream")
                continue
            a = {v.name: v.number for v in mine.value}
            b = {v.name: v.number for v in theirs.value}
            for value, number in a.items():
                if value not in b:
                    problems.append(f"enum value {name}.{value}: not defined upstream")
                elif b[value] != number:
                    problems.append(f"enum value {name}.{value}: number is {number}, upstream {b[value]}")
            if complete:
                for value in b.keys() - a.keys():
                    problems.append(f"enum value {name}.{value}: missing in ours")
        elif kind == "service":
            mine, theirs = ours.services[name], upstream.services.get(name)
            if theirs is None:
                problems.append(f"service {name}: not defined upstream")
                continue
            their_methods = {m.name: m for m in theirs.method}
            for method in mine.method:
                other = their_methods.get(method.name)
                if other is None:
                    problems.append(f"rpc {name}.{method.name}: not defined upstream")
                    continue
                for key in ("input_type", "output_type", "client_streaming", "server_streaming"):
                    if getattr(method, key) != getattr(other, key):
                        problems.append(
                            f"rpc {name}.{method.name}: {key} is {getattr(method, key)!r}, "
                            f"upstream {getattr(other, key)!r}"
                        )
            if complete:
                for missing in their_methods.keys() - {m.name for m in mine.method}:
                    problems.append(f"rpc {name}.{missing}: missing in ours")
    return problems


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def upstream_fds(tmp_path_factory) -> descriptor_pb2.FileDescriptorSet:
    if not UPSTREAM_API.is_dir():
        pytest.skip(
            f"containerd upstream protos not found at {UPSTREAM_API} "
            "(apt-get install golang-github-containerd-containerd-dev, or set CTR_MAGIC_GOCODE_SRC)"
        )
    missing = [str(p) for p in UPSTREAM_CGROUP_METRICS if not p.is_file()]
    if missing:
        pytest.skip(f"cgroups upstream protos not found ({missing[0]}): "
                    "apt-get install golang-github-containerd-cgroups-dev")
    files = sorted(UPSTREAM_API.rglob("*.proto")) + UPSTREAM_CGROUP_METRICS
    return compile_descriptor_set(
        UPSTREAM_INCLUDES, files, tmp_path_factory.mktemp("upstream") / "upstream.pb"
    )


@pytest.fixture(scope="module")
def our_fds(tmp_path_factory) -> descriptor_pb2.FileDescriptorSet:
    files = sorted(OUR_PROTOS.rglob("*.proto"))
    assert files, f"no protos under {OUR_PROTOS}"
    return compile_descriptor_set([OUR_PROTOS], files, tmp_path_factory.mktemp("ours") / "ours.pb")


def _our_file_names() -> set[str]:
    return {p.relative_to(OUR_PROTOS).as_posix() for p in OUR_PROTOS.rglob("*.proto")}


@pytest.fixture(scope="module")
def upstream(upstream_fds) -> Index:
    return Index(upstream_fds)


# --------------------------------------------------------------------------- tests


def test_our_protos_match_upstream(our_fds, upstream):
    ours = Index(our_fds, _our_file_names())
    assert ours.defined, "nothing defined in protos/"
    problems = compare(ours, upstream)
    assert not problems, "protos/ differ from containerd upstream:\n" + "\n".join(problems)


def test_expected_api_surface_is_present(our_fds):
    ours = Index(our_fds, _our_file_names())
    services = {name for kind, name in ours.defined if kind == "service"}
    assert services >= {
        "containerd.services.version.v1.Version",
        "containerd.services.namespaces.v1.Namespaces",
        "containerd.services.introspection.v1.Introspection",
        "containerd.services.containers.v1.Containers",
        "containerd.services.content.v1.Content",
        "containerd.services.images.v1.Images",
        "containerd.services.leases.v1.Leases",
        "containerd.services.snapshots.v1.Snapshots",
        "containerd.services.diff.v1.Diff",
        "containerd.services.tasks.v1.Tasks",
        "containerd.services.events.v1.Events",
    }
    messages = {name for kind, name in ours.defined if kind in ("message", "enum")}
    assert messages >= {
        "containerd.types.Mount",
        "containerd.types.Descriptor",
        "containerd.types.Platform",
        "containerd.types.Metric",
        "containerd.v1.types.Process",
        "containerd.v1.types.Status",
        "containerd.services.events.v1.Envelope",
        *(
            f"containerd.events.Task{n}"
            for n in (
                ["Create", "Start", "Delete", "IO", "Exit", "OOM", "ExecAdded", "ExecStarted", "Paused", "Resumed",
                 "Checkpointed"]
            )
        ),
        "containerd.events.ContainerCreate",
        "containerd.events.ContentDelete",
        "containerd.events.SnapshotPrepare",
        "containerd.events.NamespaceCreate",
        # Upstream declares the image events in the images service package.
        "containerd.services.images.v1.ImageCreate",
        # The payloads of Tasks.Metrics on cgroup v1 and v2 hosts.
        "io.containerd.cgroups.v1.Metrics",
        "io.containerd.cgroups.v1.MemoryStat",
        "io.containerd.cgroups.v1.BlkIOStat",
        "io.containerd.cgroups.v2.Metrics",
        "io.containerd.cgroups.v2.MemoryStat",
        "io.containerd.cgroups.v2.IOStat",
    }


def _field(fds, message: str, field: str):
    index = Index(fds)
    for f in index.messages[message].field:
        if f.name == field:
            return f
    raise KeyError(f"{message}.{field}")


def _method(fds, service: str, method: str):
    for m in Index(fds).services[service].method:
        if m.name == method:
            return m
    raise KeyError(f"{service}.{method}")


def _mutate_number(fds):
    _field(fds, "containerd.types.Descriptor", "annotations").number = 4
    return "field containerd.types.Descriptor.annotations: number is 4, upstream 5"


def _mutate_type(fds):
    _field(fds, "containerd.v1.types.Process", "pid").type = FDP.TYPE_UINT64
    return "field containerd.v1.types.Process.pid: type is 'TYPE_UINT64', upstream 'TYPE_UINT32'"


def _mutate_type_name(fds):
    _field(fds, "containerd.services.tasks.v1.GetResponse", "process").type_name = ".containerd.types.Mount"
    return "field containerd.services.tasks.v1.GetResponse.process: type_name"


def _mutate_label(fds):
    _field(fds, "containerd.services.tasks.v1.CreateTaskRequest", "rootfs").label = FDP.LABEL_OPTIONAL
    return "field containerd.services.tasks.v1.CreateTaskRequest.rootfs: label"


def _mutate_streaming(fds):
    _method(fds, "containerd.services.content.v1.Content", "Write").client_streaming = False
    return "rpc containerd.services.content.v1.Content.Write: client_streaming is False, upstream True"


def _mutate_cgroup_metric(fds):
    _field(fds, "io.containerd.cgroups.v1.MemoryStat", "total_rss").number = 2
    return "field io.containerd.cgroups.v1.MemoryStat.total_rss: number is 2, upstream 19"


def _mutate_enum(fds):
    for value in Index(fds).enums["containerd.v1.types.Status"].value:
        if value.name == "PAUSING":
            value.number = 6
    return "enum value containerd.v1.types.Status.PAUSING: number is 6, upstream 5"


@pytest.mark.parametrize(
    "mutate",
    [_mutate_number, _mutate_type, _mutate_type_name, _mutate_label, _mutate_streaming, _mutate_enum,
     _mutate_cgroup_metric],
)
def test_comparator_catches_mutations(our_fds, upstream, mutate):
    """Self-check: break a copy of our descriptors and make sure compare() notices."""
    names = _our_file_names()
    assert compare(Index(our_fds, names), upstream) == []
    broken = copy.deepcopy(our_fds)
    expected = mutate(broken)
    problems = compare(Index(broken, names), upstream)
    assert any(p.startswith(expected) for p in problems), problems


def test_comparator_catches_missing_and_extra(our_fds, upstream):
    names = _our_file_names()
    broken = copy.deepcopy(our_fds)
    index = Index(broken)
    descriptor = index.messages["containerd.types.Descriptor"]
    kept = [f for f in descriptor.field if f.name != "size"]
    del descriptor.field[:]
    descriptor.field.extend(kept)
    descriptor.field.add(name="bogus", number=9, type=FDP.TYPE_STRING, label=FDP.LABEL_OPTIONAL)
    problems = compare(Index(broken, names), upstream)
    assert "field containerd.types.Descriptor.size (#3): missing in ours" in problems
    assert "field containerd.types.Descriptor.bogus: not defined upstream" in problems
