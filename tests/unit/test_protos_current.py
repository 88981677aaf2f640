"""The committed stubs in ctr_magic/_proto must equal a fresh run of tools/gen_protos.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("grpc_tools", reason="grpcio-tools is needed to regenerate the stubs")

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED = REPO_ROOT / "ctr_magic" / "_proto"


def _load_gen_protos():
    spec = importlib.util.spec_from_file_location("gen_protos", REPO_ROOT / "tools" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_protos", module)
    spec.loader.exec_module(module)
    return module


gen_protos = _load_gen_protos()


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fresh_proto")
    gen_protos.generate(out_dir=out)
    return out


def test_committed_stubs_match_fresh_generation(fresh):
    expected = _tree(fresh)
    actual = _tree(COMMITTED)
    missing = sorted(expected.keys() - actual.keys())
    stale = sorted(actual.keys() - expected.keys())
    differs = sorted(k for k in expected.keys() & actual.keys() if expected[k] != actual[k])
    assert not (missing or stale or differs), (
        "ctr_magic/_proto is out of date with protos/ "
        f"(installed grpcio-tools {gen_protos.grpc_tools_version()}); "
        "run `python3 tools/gen_protos.py`.\n"
        f"missing: {missing}\nstale: {stale}\ndiffers: {differs}"
    )


def test_generation_is_deterministic(fresh, tmp_path):
    gen_protos.generate(out_dir=tmp_path)
    assert _tree(tmp_path) == _tree(fresh)


def test_every_proto_has_stubs_and_packages(fresh):
    tree = _tree(fresh)
    for source in gen_protos.proto_files():
        stem = source[: -len(".proto")]
        for suffix in ("_pb2.py", "_pb2_grpc.py"):
            assert stem + suffix in tree
        parent = Path(stem).parent
        while parent != Path("."):
            assert f"{parent.as_posix()}/__init__.py" in tree
            parent = parent.parent
    assert "__init__.py" in tree
    assert "from containerd." not in tree["containerd/services/tasks/v1/tasks_pb2.py"].decode()
    assert (
        "from ctr_magic._proto.containerd.types import mount_pb2"
        in tree["containerd/services/tasks/v1/tasks_pb2.py"].decode()
    )


def test_check_detects_and_generate_fixes_stale_tree(fresh, tmp_path):
    out = tmp_path / "proto"
    gen_protos.generate(out_dir=out)
    assert gen_protos.diff(out_dir=out) == []

    (out / "containerd" / "types" / "mount_pb2.py").write_text("# edited\n")
    (out / "containerd" / "gone_pb2.py").write_text("# left over\n")
    (out / "containerd" / "events" / "task_pb2.pyi").unlink()
    assert gen_protos.diff(out_dir=out) == [
        "missing: containerd/events/task_pb2.pyi",
        "stale (no longer generated): containerd/gone_pb2.py",
        "differs: containerd/types/mount_pb2.py",
    ]

    changed = gen_protos.generate(out_dir=out)
    assert changed == [
        "containerd/events/task_pb2.pyi",
        "containerd/gone_pb2.py",
        "containerd/types/mount_pb2.py",
    ]
    assert _tree(out) == _tree(fresh)


def test_generated_modules_import():
    from ctr_magic._proto.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
    from ctr_magic._proto.containerd.types import descriptor_pb2

    assert tasks_pb2_grpc.TasksStub
    assert (
        tasks_pb2.CreateTaskRequest.DESCRIPTOR.full_name == "containerd.services.tasks.v1.CreateTaskRequest"
    )
    assert descriptor_pb2.Descriptor.__module__ == "ctr_magic._proto.containerd.types.descriptor_pb2"
