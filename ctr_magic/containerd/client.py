"""A gRPC connection to containerd: channel, namespace metadata, stubs, one call path."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Generator
from typing import Any, Optional

import grpc

from .. import errors
from ..constants import DEFAULT_NAMESPACE, DEFAULT_SOCKET_PATH, LEASE_HEADER, NAMESPACE_HEADER
from .grpc_errors import map_rpc_error
from .interrupts import deferred_interrupts

log = logging.getLogger(__name__)

_MAX_MESSAGE = 64 * 1024 * 1024
RECONNECT_BACKOFF_MIN_MS = 100
RECONNECT_BACKOFF_MAX_MS = 500
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    # containerd is local: no proxies, no DNS games.
    ("grpc.enable_http_proxy", 0),
    # The :authority a unix socket would otherwise get ("localhost") is fine for containerd.
    ("grpc.default_authority", "localhost"),
    # gRPC's default backoff grows to 120 s while the daemon is down, so a call made just after it came
    # back kept failing for up to that long (16.7 s after a 30 s outage). containerd is local: retrying
    # every half second at most costs nothing and bounds the recovery.
    ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MIN_MS),
    ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MIN_MS),
    ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
]


def grpc_target(address: str) -> str:
    """``/run/x.sock`` or ``unix:///run/x.sock`` -> unix target; ``tcp://h:p`` -> ``h:p``."""
    if not address:
        raise errors.InvalidArgument("containerd address is empty", hint=f"e.g. {DEFAULT_SOCKET_PATH}")
    if address.startswith("tcp://"):
        return address[len("tcp://"):]
    if address.startswith("unix://"):
        return "unix:" + address[len("unix://"):]
    if address.startswith("/") or address.startswith("."):
        return "unix:" + os.path.abspath(address)
    return address


def wait_settled(future: Any, timeout: Optional[float] = None) -> bool:
    """Block until the gRPC *future* is done (True) or *timeout* seconds pass (False).

    Ctrl-C then lands in this private Event's wait, not inside gRPC's own condition: the fault trials
    caught an interrupt that left one of gRPC's locks held, and every later call on the channel hung.
    """
    done = threading.Event()
    with deferred_interrupts():
        future.add_done_callback(lambda _future: done.set())
    return done.wait(timeout)


class CancelScope:
    """Lets another thread cancel the RPCs a worker runs (e.g. a pull stopping its unpacker)."""

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._inflight: set[Any] = set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            inflight = list(self._inflight)
        for future in inflight:
            future.cancel()

    def track(self, future: Any) -> None:
        with self._lock:
            self._inflight.add(future)
        if self.cancelled:
            future.cancel()

    def untrack(self, future: Any) -> None:
        with self._lock:
            self._inflight.discard(future)


class ContainerdClient:
    """Holds one channel; every RPC goes through :meth:`call` so errors map in one place."""

    def __init__(self, address: str = DEFAULT_SOCKET_PATH, namespace: str = DEFAULT_NAMESPACE) -> None:
        if not namespace:
            raise errors.InvalidArgument("namespace is empty", hint=f"use {DEFAULT_NAMESPACE!r} or a name of yours")
        self.address = address
        self.namespace = namespace
        self._channel = grpc.insecure_channel(grpc_target(address), options=_CHANNEL_OPTIONS)
        self._stubs: dict[type, Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- plumbing -------------------------------------------------------------------------------
    def _check_open(self) -> None:
        # grpc crashes the interpreter (SIGSEGV) when a stub is made on a closed channel.
        if self._closed:
            raise errors.Unavailable(f"the connection to containerd at {self.address} was closed",
                                     hint="connect again")

    def stub(self, stub_class: type) -> Any:
        self._check_open()
        with self._lock:
            stub = self._stubs.get(stub_class)
            if stub is None:
                stub = self._stubs[stub_class] = stub_class(self._channel)
            return stub

    def metadata(self, lease: str = "", namespace: Optional[str] = None) -> tuple[tuple[str, str], ...]:
        md: tuple[tuple[str, str], ...] = ((NAMESPACE_HEADER, namespace or self.namespace),)
        if lease:
            md += ((LEASE_HEADER, lease),)
        return md

    def call(
        self,
        method: Any,
        request: Any,
        *,
        what: str,
        timeout: Optional[float] = None,
        lease: str = "",
        namespace: Optional[str] = None,
        cancel_scope: Optional[CancelScope] = None,
    ) -> Any:
        """Run a unary RPC; Ctrl-C (or *cancel_scope* from another thread) cancels it; failures become
        CtrError naming *what*."""
        if cancel_scope is not None and cancel_scope.cancelled:
            raise errors.Interrupted(f"{what}: cancelled")
        self._check_open()
        with deferred_interrupts():
            future = method.future(request, timeout=timeout, metadata=self.metadata(lease, namespace))
        if cancel_scope is not None:
            cancel_scope.track(future)
        try:
            wait_settled(future)
            with deferred_interrupts():
                return future.result()
        except KeyboardInterrupt:
            with deferred_interrupts():
                future.cancel()
            raise
        except grpc.RpcError as err:
            if cancel_scope is not None and cancel_scope.cancelled:
                raise errors.Interrupted(f"{what}: cancelled") from None
            raise map_rpc_error(err, what, self.address) from None
        finally:
            if cancel_scope is not None:
                cancel_scope.untrack(future)

    def stream(
        self,
        method: Any,
        request: Any,
        *,
        what: str,
        timeout: Optional[float] = None,
        lease: str = "",
    ) -> Generator[Any, None, None]:
        """Run a server-streaming (or stream-stream) RPC, mapping errors; cancel on early exit."""
        self._check_open()
        call = method(request, timeout=timeout, metadata=self.metadata(lease))
        try:
            yield from call
        except grpc.RpcError as err:
            raise map_rpc_error(err, what, self.address) from None
        finally:
            call.cancel()

    def wait_until_reachable(self, timeout: float) -> bool:
        """True once containerd answers (at once if it does), False after *timeout* seconds.

        For cleaning up after containerd went away mid-operation: the call is queued until the
        channel is connected again instead of failing fast.
        """
        from google.protobuf import empty_pb2

        from .pb import version_pb2_grpc

        try:
            self.stub(version_pb2_grpc.VersionStub).Version(empty_pb2.Empty(), timeout=timeout,
                                                              wait_for_ready=True)
        except grpc.RpcError:
            return False
        return True

    def close(self) -> None:
        self._closed = True
        self._channel.close()

    def __enter__(self) -> ContainerdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DefaultClientFactory:
    """Returns a connected client for a socket path or ``tcp://host:port`` address."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET_PATH) -> None:
        self.socket_path = socket_path

    def new(self, namespace: str = DEFAULT_NAMESPACE) -> ContainerdClient:
        return ContainerdClient(self.socket_path, namespace)
