"""``%ctr cp`` on the Engine API: ``/containers/{id}/archive`` (GET a tar out, PUT one in, HEAD to stat)."""

from __future__ import annotations

import os
import posixpath
from typing import TYPE_CHECKING, Any, Optional

from .. import errors
from ..copying import Progress, local_source, local_target, tar_stream, tree_size, unpack

if TYPE_CHECKING:
    from .api import EngineAPI
    from .names import ContainerNames

#: Go's os.ModeDir, as Docker reports it in the path stat.
_GO_MODE_DIR = 1 << 31


class FilesPart:
    """The Copying feature on the Engine API (a part of DockerService)."""

    def __init__(self, api: EngineAPI, names: ContainerNames) -> None:
        self.api = api
        self.names = names

    def _path_stat(self, cid: str, container_id: str, path: str) -> Optional[dict[str, Any]]:
        try:
            return dict(self.api.archive_stat(cid, path))
        except errors.NotFound:
            return None

    def copy_from_container(self, container_id: str, path: str, dest: str, *,
                            progress: Optional[Progress] = None) -> int:
        """Copy *path* (file or directory) out of the container to the local *dest*; the bytes moved."""
        cid = self.names.target(container_id)
        found = self._path_stat(cid, container_id, path)
        if found is None:
            raise errors.NotFound(f"{path} does not exist in container {container_id}")
        name = posixpath.basename(path.rstrip("/")) or "."
        directory, top = local_target(dest, name)
        total = int(found.get("size") or 0) if not int(found.get("mode") or 0) & _GO_MODE_DIR else 0
        with self.api.archive_get(cid, path) as chunks:
            return unpack(chunks, directory, rename_top=top, progress=progress, total=total)

    def copy_to_container(self, container_id: str, source: str, path: str, *,
                          progress: Optional[Progress] = None) -> int:
        """Copy the local *source* (file or directory) to *path* in the container; the bytes moved.

        An existing directory (or a path ending in ``/``) receives *source* under its own name;
        any other path is the new name, in a directory that must exist.
        """
        local = local_source(source)
        cid = self.names.target(container_id)
        found = self._path_stat(cid, container_id, path)
        if found is not None and int(found.get("mode") or 0) & _GO_MODE_DIR:
            directory, name = path, os.path.basename(local.rstrip("/"))
        elif path.endswith("/"):
            raise errors.NotFound(f"directory {path} does not exist in container {container_id}",
                                  hint=f"create it first: %ctr exec {container_id} -- mkdir -p {path}")
        else:
            directory, name = posixpath.dirname(path.rstrip("/")) or "/", posixpath.basename(path.rstrip("/"))
            if self._path_stat(cid, container_id, directory) is None:
                raise errors.NotFound(f"directory {directory} does not exist in container {container_id}",
                                      hint=f"create it first: %ctr exec {container_id} -- mkdir -p {directory}")
        self.api.archive_put(cid, directory, tar_stream(local, name, progress=progress))
        return tree_size(local)


__all__ = ["FilesPart"]
