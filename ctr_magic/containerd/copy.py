"""``%ctr cp`` on containerd, through the container's root filesystem on this host.

Why the root and not a tar over exec: it needs nothing in the image (no ``tar``, no shell), works
on a stopped container too, and keeps modes and links exactly as the host's tar module writes
them. A running task's root is ``/proc/<pid>/root`` (its mounts, volumes included, as the process
sees them); a container without a running task has its snapshot mounted for the copy. Paths are
resolved inside that root as the container would (:func:`~ctr_magic.copying.secure_join`), so a
link in the container never leads to the host's files.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Callable, Iterator
from typing import Any, Optional

from .. import errors
from ..copying import Progress, local_source, local_target, secure_join, tar_stream, tree_size, unpack
from .pb import task_pb2
from .runtime_base import Runtime, check_id

_LIVE = (task_pb2.RUNNING, task_pb2.PAUSED, task_pb2.PAUSING)


class CopyPart:
    """The Copying feature on containerd. *mount_root(container_id, read_only)* mounts a container's
    snapshot and returns a MountedSnapshot (the service's ``mount_container_snapshot``)."""

    def __init__(self, runtime: Runtime, mount_root: Callable[[str, bool], Any]) -> None:
        self.runtime = runtime
        self.mount_root = mount_root

    @contextlib.contextmanager
    def _container_root(self, container_id: str, *, write: bool) -> Iterator[str]:
        check_id(container_id)
        process = self.runtime.task_process(container_id)
        if process is not None and process.status in _LIVE and process.pid:
            yield f"/proc/{process.pid}/root"
            return
        self.runtime.container_record(container_id)  # NotFound naming the container
        mounted = self.mount_root(container_id, not write)
        try:
            yield str(mounted.dir)
        finally:
            mounted.unmount()

    def copy_from_container(self, container_id: str, path: str, dest: str, *,
                            progress: Optional[Progress] = None) -> int:
        """Copy *path* (file or directory) out of the container to the local *dest*; the bytes moved."""
        name = posixpath.basename(path.rstrip("/")) or "."
        with self._container_root(container_id, write=False) as root:
            host = secure_join(root, path)
            if not os.path.lexists(host):
                raise errors.NotFound(f"{path} does not exist in container {container_id}")
            directory, top = local_target(dest, name)
            return unpack(tar_stream(host, top), directory, progress=progress, total=tree_size(host))

    def copy_to_container(self, container_id: str, source: str, path: str, *,
                          progress: Optional[Progress] = None) -> int:
        """Copy the local *source* (file or directory) to *path* in the container; the bytes moved.

        An existing directory (or a path ending in ``/``) receives *source* under its own name;
        any other path is the new name, in a directory that must exist.
        """
        local = local_source(source)
        with self._container_root(container_id, write=True) as root:
            host = secure_join(root, path)
            if os.path.isdir(host):
                directory, name = host, os.path.basename(local.rstrip("/"))
            elif path.endswith("/"):
                raise errors.NotFound(f"directory {path} does not exist in container {container_id}",
                                      hint=f"create it first: %ctr exec {container_id} -- mkdir -p {path}")
            else:
                directory, name = os.path.dirname(host), os.path.basename(host)
                if not os.path.isdir(directory):
                    parent = posixpath.dirname(path.rstrip("/")) or "/"
                    raise errors.NotFound(f"directory {parent} does not exist in container {container_id}",
                                          hint=f"create it first: %ctr exec {container_id} -- mkdir -p {parent}")
            total = tree_size(local)
            unpack(tar_stream(local, name), directory, progress=progress, total=total)
            return total


__all__ = ["CopyPart"]
