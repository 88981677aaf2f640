"""Taking an environment down: every task killed, the daemons stopped, nothing left mounted or running.

Also clears what containerd 1.6's runc shims leave behind when they have to be killed: runc's
state (``runc delete``), the shim sockets in /run/containerd/s and the empty per-namespace state
dirs in /run/containerd/runc.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .. import errors
from ..hostmount import mounts_under, unmount_all
from .binaries import find_binary
from .ctrcli import CtrCli
from .processes import ProcessTable, arg_value, wait_until
from .state import EnvPaths

log = logging.getLogger(__name__)

# Fixed by containerd 1.6 and its runc v2 shim, whatever containerd's own state dir is.
SHIM_SOCKET_DIR = "/run/containerd/s"
RUNC_ROOT = "/run/containerd/runc"


class Teardown:
    """One ``down``: call :meth:`run` with the environment's lock held."""

    def __init__(self, paths: EnvPaths, processes: ProcessTable, *, stop_timeout: float) -> None:
        self.paths = paths
        self.processes = processes
        self.ctr = CtrCli(paths)
        self.stop_timeout = stop_timeout

    def our_mounts(self) -> list[str]:
        # Everything below the base dir and the run dir, but never the base dir itself:
        # it may be a mount point the user made on purpose.
        return mounts_under([self.paths.base_dir, self.paths.run_dir], include_roots=False)

    def _kill_tasks(self, namespaces: Sequence[str]) -> list[tuple[str, str]]:
        tasks = self.ctr.tasks(namespaces)
        for ns, task_id, status in tasks:
            if status != "STOPPED":
                log.info("killing task %s/%s", ns, task_id)
                self.ctr.run("tasks", "kill", "--all", "--signal", "SIGKILL", task_id, namespace=ns, timeout=10.0)
        return [(ns, task_id) for ns, task_id, _ in tasks]

    def _delete_tasks(self, namespaces: Sequence[str]) -> list[tuple[str, str]]:
        tasks = self.ctr.tasks(namespaces)
        for ns, task_id, _ in tasks:
            res = self.ctr.run("tasks", "delete", "--force", task_id, namespace=ns, timeout=20.0)
            if res.returncode != 0:
                log.warning("could not delete task %s/%s: %s", ns, task_id, res.stderr.strip())
        return [(ns, task_id) for ns, task_id, _ in tasks]

    @staticmethod
    def _runc_delete(namespace: str, task_id: str) -> None:
        """Remove runc's state and cgroups of a container whose shim we had to kill."""
        root = Path(RUNC_ROOT) / namespace
        if not (root / task_id).exists():
            return
        cmd = [find_binary("runc"), "--root", str(root), "delete", "--force", task_id]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
        if res.returncode != 0:
            log.warning("runc delete %s/%s: %s", namespace, task_id, res.stderr.strip())

    def _shim_socket(self, namespace: str, task_id: str) -> Path:
        # containerd 1.6 puts shim sockets at /run/containerd/s/sha256(<address>/<ns>/<id>).
        key = os.path.join(str(self.paths.containerd_socket), namespace, task_id)
        return Path(SHIM_SOCKET_DIR) / hashlib.sha256(key.encode()).hexdigest()

    @staticmethod
    def _remove_empty_runc_roots(namespaces: set[str]) -> None:
        """runc's per-namespace state dirs (``/run/containerd/runc/<ns>``) the shims leave behind, if empty."""
        for ns in namespaces:
            if not ns or "/" in ns or ns.startswith("."):
                continue
            path = Path(RUNC_ROOT) / ns
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:  # not empty: a container's state is still there (not ours to judge)
                log.debug("leaving %s: %s", path, exc.strerror)
            else:
                log.debug("removed %s", path)

    def run(self) -> None:
        paths, processes = self.paths, self.processes
        state = paths.read_state()
        containerd_up = self.ctr.answers() if paths.containerd_socket.exists() else False
        seen: set[tuple[str, str]] = set()
        # Listed while containerd still answers: their runc dirs are removed at the end.
        namespaces = self.ctr.namespaces() if containerd_up else []

        # 1. kill every task so nothing waits on a graceful stop
        if containerd_up:
            seen.update(self._kill_tasks(namespaces))
            wait_until(lambda: all(s == "STOPPED" for _, _, s in self.ctr.tasks(namespaces)), self.stop_timeout, 0.1)

        # 2. dockerd (it owns the moby namespace's containers)
        dockerd_pids = processes.find(paths.is_dockerd)
        if state and state.dockerd_pid and processes.pid_is(state.dockerd_pid, paths.is_dockerd):
            dockerd_pids = sorted({*dockerd_pids, state.dockerd_pid})
        processes.stop(dockerd_pids, "dockerd", max(self.stop_timeout, 20.0))

        # 3. delete what is left, then containerd itself
        if containerd_up:
            seen.update(self._delete_tasks(namespaces))
        processes.stop(processes.find(paths.is_containerd), "containerd", self.stop_timeout)

        # 4. shims (and their container processes) that outlived containerd
        shims = {pid: argv for pid, argv in processes.running() if paths.is_shim(argv)}
        if shims:
            orphans = processes.children_of(set(shims))
            log.warning("killing %d leftover shim(s) and %d container process(es)", len(shims), len(orphans))
            processes.kill([*orphans, *shims], "containerd-shim")
            for argv in shims.values():
                ns, task_id = arg_value(argv, "-namespace"), arg_value(argv, "-id")
                if ns and task_id:
                    seen.add((ns, task_id))
                    self._runc_delete(ns, task_id)

        # 5. registry
        processes.stop(processes.find(paths.is_registry), "docker-registry", self.stop_timeout)

        # 6. mounts, shim sockets, runc's namespace dirs and the run dir
        unmount_all([paths.base_dir, paths.run_dir], include_roots=False)
        for ns, task_id in seen:
            with contextlib.suppress(FileNotFoundError):
                self._shim_socket(ns, task_id).unlink()
        self._remove_empty_runc_roots({*namespaces, *(ns for ns, _ in seen)})
        if paths.run_dir.exists():
            if mounts_under([paths.run_dir]):
                raise errors.CtrError(f"{paths.run_dir} still has mounts; not removing it")
            shutil.rmtree(paths.run_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            paths.state_file.unlink()
        self._verify()

    def _verify(self) -> None:
        left = [pid for pid, argv in self.processes.running() if self.paths.is_ours(argv)]
        if left:
            raise errors.CtrError(f"processes still running after down: {left}")
        mounts = self.our_mounts()
        if mounts:
            raise errors.CtrError(f"mounts left after down: {mounts[:5]}")


__all__ = ["Teardown"]
