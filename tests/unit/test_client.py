"""The containerd connection layer without a daemon: targets, and errors from a socket nobody serves."""

from pathlib import Path

import pytest

import ctr_magic
from ctr_magic.containerd.client import ContainerdClient, DefaultClientFactory, grpc_target
from ctr_magic.containerd.service import DefaultService
from ctr_magic.errors import InvalidArgument, Unavailable


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("/run/containerd/containerd.sock", "unix:/run/containerd/containerd.sock"),
        ("unix:///run/x.sock", "unix:/run/x.sock"),
        ("tcp://127.0.0.1:1234", "127.0.0.1:1234"),
        ("127.0.0.1:1234", "127.0.0.1:1234"),
    ],
)
def test_grpc_target(address: str, target: str) -> None:
    assert grpc_target(address) == target


def test_relative_socket_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert grpc_target("./c.sock") == f"unix:{tmp_path}/c.sock"


def test_empty_address_and_namespace_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="address is empty"):
        grpc_target("")
    with pytest.raises(InvalidArgument, match="namespace is empty"):
        ContainerdClient("/nonexistent.sock", "")


def test_unreachable_socket_gives_one_actionable_line(tmp_path: Path) -> None:
    # A real gRPC channel to a socket path nobody listens on: the daemon-down case, for real.
    sock = tmp_path / "nobody.sock"
    with DefaultService(DefaultClientFactory(str(sock)).new("default")) as svc, pytest.raises(Unavailable) as err:
        svc.ping(timeout=2)
    text = str(err.value)
    assert str(sock) in text
    assert "ctr-magic up" in text
    assert "\n" not in text


def test_connect_unknown_backend() -> None:
    with pytest.raises(InvalidArgument, match="unknown backend 'podman'"):
        ctr_magic.connect("podman")


def test_public_names_resolve() -> None:
    for name in ("connect", "DefaultService", "DefaultClientFactory", "TaskStatus", "ImageInfo"):
        assert getattr(ctr_magic, name) is not None
    assert str(ctr_magic.TaskStatus.RUNNING) == "running"
    assert [s.value for s in ctr_magic.TaskStatus] == [0, 1, 2, 3, 4]


def test_cancel_scope_refuses_new_calls_and_cancels_tracked_ones(tmp_path: Path) -> None:
    from ctr_magic.containerd.client import CancelScope
    from ctr_magic.containerd.pb import version_pb2_grpc
    from ctr_magic.errors import Interrupted

    class Future:
        cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    scope = CancelScope()
    inflight = Future()
    scope.track(inflight)
    scope.cancel()
    assert inflight.cancelled and scope.cancelled
    late = Future()
    scope.track(late)  # registered after cancel(): cancelled at once
    assert late.cancelled
    client = ContainerdClient(str(tmp_path / "nobody.sock"), "default")
    stub = client.stub(version_pb2_grpc.VersionStub)
    with pytest.raises(Interrupted, match="asking for the version: cancelled"):
        client.call(stub.Version, None, what="asking for the version", cancel_scope=scope)


def test_a_closed_client_says_so_instead_of_crashing(tmp_path: Path) -> None:
    from ctr_magic.containerd.pb import snapshots_pb2_grpc

    client = ContainerdClient(str(tmp_path / "nowhere.sock"), "default")
    client.close()
    with pytest.raises(Unavailable, match="was closed"):
        client.stub(snapshots_pb2_grpc.SnapshotsStub)
