"""Reading from containerd's Content service."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any, Optional

from .. import errors
from .client import ContainerdClient
from .pb import content_pb2, content_pb2_grpc


class ContentStore:
    """Read-side helpers over the Content service (writes live with the pull code)."""

    def __init__(self, client: ContainerdClient) -> None:
        self._client = client
        self._stub = client.stub(content_pb2_grpc.ContentStub)

    def info(self, digest: str) -> Optional[content_pb2.Info]:
        try:
            resp = self._client.call(self._stub.Info, content_pb2.InfoRequest(digest=digest),
                                     what=f"content {digest}")
        except errors.NotFound:
            return None
        return resp.info

    def exists(self, digest: str) -> bool:
        return self.info(digest) is not None

    def chunks(self, digest: str, *, size: int = 0, what: str = "") -> Iterator[bytes]:
        """Stream the blob's bytes (the first *size* bytes if *size* > 0); closing stops the read."""
        stream = self._client.stream(
            self._stub.Read,
            content_pb2.ReadContentRequest(digest=digest, size=size),
            what=what or f"reading content {digest}",
        )
        try:
            for chunk in stream:
                yield chunk.data
        finally:
            stream.close()  # cancels the RPC

    def read(self, digest: str, *, size: int = 0, what: str = "") -> bytes:
        return b"".join(self.chunks(digest, size=size, what=what))

    def read_json(self, digest: str, *, what: str = "") -> Any:
        data = self.read(digest, what=what)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise errors.CtrError(f"content {digest} is not valid JSON ({exc})") from None

    def set_labels(self, digest: str, labels: dict[str, str]) -> None:
        """Merge *labels* into the blob's labels (only the named keys are touched)."""
        info = content_pb2.Info(digest=digest, labels=labels)
        paths = [f"labels.{key}" for key in labels]
        from google.protobuf import field_mask_pb2

        self._client.call(
            self._stub.Update,
            content_pb2.UpdateRequest(info=info, update_mask=field_mask_pb2.FieldMask(paths=paths)),
            what=f"labelling content {digest}",
        )

    def delete(self, digest: str) -> None:
        with contextlib.suppress(errors.NotFound):
            self._client.call(self._stub.Delete, content_pb2.DeleteContentRequest(digest=digest),
                              what=f"deleting content {digest}")
