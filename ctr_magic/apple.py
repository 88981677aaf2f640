"""AppleService: Apple Container through socktainer, a daemon serving the Docker Engine API.

Like the reference, ctr-magic does not talk to Apple's framework: it supervises **socktainer**
(find the binary, start it, wait until ``/_ping`` answers, check it before each call and restart
it once if it died, stop it on ``close()``) and speaks the Engine API to its socket through
:class:`~ctr_magic.docker.service.DockerService`, with socktainer's behaviour:

* stop: ``POST /stop`` with ``t`` in whole seconds (always sent: socktainer's own default is 5 s)
  and the signal's name; a stopped container answers 304, which is fine; with ``force`` a failed
  stop falls back to kill;
* delete_container is always forced (``v`` removes volumes when ``cleanup_snapshot``);
* delete_task has nothing to delete (it only kills a running task when forced);
* task info and listings come from the container state; network calls are no-ops; snapshots are
  ``NotSupported``;
* exec is NOT limited as in the reference: env, working dir, user, stdin, separate stdout/stderr
  and streaming sessions all go through the Engine API; since some upgraded exec streams of
  socktainer stay open after the process exits, the stream is ended once exec inspect reports
  the exit and the stream has been idle for :attr:`AppleService.exec_hang_grace` seconds.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import shutil
import signal as _signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

from . import errors
from .constants import SOCKTAINER_BINARY, SOCKTAINER_SOCKET, SOCKTAINER_START_TIMEOUT
from .docker.api import EngineAPI
from .docker.convert import task_status
from .docker.requests import signal_name
from .docker.service import DockerService
from .docker.stopping import KILL_WAIT, LIVE_STATUSES, StopPart
from .logtail import log_tail
from .service import SERVICE_METHODS
from .types import DeleteContainerOptions, DeleteTaskOptions, StopTaskOptions

log = logging.getLogger(__name__)

_PING_TIMEOUT = 2.0


@dataclass
class AppleServiceConfig:
    """Where socktainer serves and which binary to run.

    ``socket_path``: default ``~/.socktainer/container.sock``; socktainer itself always serves
    there (it has no option to move it), so this only tells ctr-magic where to connect.
    ``binary_path``: default ``socktainer`` found on PATH.
    ``home``: the HOME socktainer runs with (its socket lives under it); default yours.
    """

    socket_path: str = ""
    binary_path: str = ""
    home: str = ""
    start_timeout: float = SOCKTAINER_START_TIMEOUT
    stop_timeout: float = 10.0
    log_path: str = ""

    def home_dir(self) -> str:
        return self.home or os.path.expanduser("~")

    def socket(self) -> str:
        if self.socket_path:
            return os.path.expanduser(self.socket_path)
        return os.path.join(self.home_dir(), SOCKTAINER_SOCKET.removeprefix("~/"))


class SocktainerSupervisor:
    """Starts socktainer when its socket does not answer, restarts it once per call if it died."""

    def __init__(self, config: AppleServiceConfig, api: EngineAPI) -> None:
        self.config = config
        self.api = api
        self.socket_path = config.socket()
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.restarts = 0
        self.closed = False
        self._lock = threading.RLock()

    # -- health -------------------------------------------------------------------------------------
    def healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            return False
        try:
            return self.api.ping(timeout=_PING_TIMEOUT)
        except errors.CtrError:
            return False

    def ensure_running(self) -> None:
        """Called before every service call: (re)start socktainer once if it is not serving."""
        with self._lock:
            if self.closed:
                raise errors.Unavailable(f"this AppleService (socktainer at {self.socket_path}) was closed",
                                         hint="connect again")
            if self.healthy():
                return
            if self.process is not None:
                log.warning("socktainer (pid %d) is not serving %s any more: restarting it",
                            self.process.pid, self.socket_path)
                self._stop_process()
                self.restarts += 1
            self.start()

    # -- process ------------------------------------------------------------------------------------
    def binary(self) -> str:
        if self.config.binary_path:
            path = os.path.expanduser(self.config.binary_path)
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                raise errors.Unavailable(f"socktainer binary {path} is missing or not executable",
                                         hint="fix binary_path, or install socktainer")
            return path
        found = shutil.which(SOCKTAINER_BINARY)
        if not found:
            raise errors.Unavailable(
                f"socktainer is not serving {self.socket_path} and no {SOCKTAINER_BINARY} binary is on PATH",
                hint="install socktainer (https://github.com/socktainer/socktainer) or pass binary_path",
            )
        return found

    def _log_path(self) -> str:
        return self.config.log_path or os.path.join(self.config.home_dir(), ".socktainer", "ctr-magic-socktainer.log")

    def start(self) -> None:
        binary = self.binary()
        expected = os.path.join(self.config.home_dir(), SOCKTAINER_SOCKET.removeprefix("~/"))
        if os.path.realpath(self.socket_path) != os.path.realpath(expected):
            log.warning("socktainer serves %s whatever socket_path says; connecting to %s", expected,
                        self.socket_path)
        env = dict(os.environ)
        if self.config.home:
            env["HOME"] = self.config.home
        log_path = self._log_path()
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        t0 = time.monotonic()
        with open(log_path, "ab") as logf:
            self.process = subprocess.Popen(
                [binary], stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # Ctrl-C in the notebook must not reach the daemon
            )
        log.info("started socktainer (pid %d), waiting for %s", self.process.pid, self.socket_path)
        try:
            self._wait_serving()
        except BaseException:
            self._stop_process()
            raise
        log.info("socktainer serving %s after %.2fs", self.socket_path, time.monotonic() - t0)

    def _wait_serving(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.config.start_timeout
        delay = 0.02
        while True:
            if self.process.poll() is not None:
                raise errors.Unavailable(
                    f"socktainer exited with status {self.process.returncode} during start-up",
                    hint=f"see {self._log_path()}: {log_tail(self._log_path(), 5, missing='')}",
                )
            try:
                if self.api.ping(timeout=_PING_TIMEOUT):
                    return
            except errors.CtrError:
                pass
            if time.monotonic() >= deadline:
                raise errors.Unavailable(
                    f"socktainer did not answer on {self.socket_path} within {self.config.start_timeout:g}s",
                    hint=f"see {self._log_path()}",
                )
            time.sleep(delay)  # polling /_ping with a deadline: socktainer has no readiness signal
            delay = min(delay * 2, 0.25)

    def _stop_process(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(_signal.SIGTERM)
            try:
                proc.wait(self.config.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("socktainer (pid %d) ignored SIGTERM for %gs: killing it", proc.pid,
                            self.config.stop_timeout)
                proc.kill()
                proc.wait(10.0)
        log.debug("socktainer (pid %d) stopped with status %s", proc.pid, proc.returncode)

    def close(self) -> None:
        """Stop socktainer if this supervisor started it (one it found running is left alone)."""
        with self._lock:
            self.closed = True
            self._stop_process()


class SocktainerStopPart(StopPart):
    """Stopping as socktainer does it: ``POST /stop`` in whole seconds; no task object to delete."""

    def stop_live(self, cid: str, container_id: str, opts: StopTaskOptions, timeout: float) -> None:
        seconds = max(0, math.ceil(timeout))
        try:
            self.api.container_stop(cid, t=seconds, signal=signal_name(opts.signal))  # 304: stopped already
        except errors.CtrError as exc:
            if not opts.force:
                raise
            log.debug("stop of %s failed (%s): killing it", container_id, exc)
            with contextlib.suppress(errors.FailedPrecondition):
                self.api.container_kill(cid, "SIGKILL")
        if task_status(self.api.container_inspect(cid).get("State")) not in LIVE_STATUSES:
            return
        self.escalate(cid, container_id, f"{seconds}s of {signal_name(opts.signal)}", opts.force)

    def delete_task(self, container_id: str, opts: Optional[DeleteTaskOptions] = None) -> None:
        data = self.names.resolve(container_id)
        if opts is not None and opts.force and task_status(data.get("State")) in LIVE_STATUSES:
            with contextlib.suppress(errors.FailedPrecondition):
                self.api.container_kill(data["Id"], "SIGKILL")
            self.wait_stopped(data["Id"], KILL_WAIT)


class AppleService(DockerService):
    """The Service contract on Apple Container, through a supervised socktainer."""

    backend = "apple"
    exec_hang_grace: Optional[float] = 2.0
    stop_part = SocktainerStopPart

    def __init__(self, config: Optional[AppleServiceConfig] = None, *, api_version: str = "") -> None:
        self.config = config or AppleServiceConfig()
        api = EngineAPI(self.config.socket(), api_version=api_version, daemon="socktainer")
        super().__init__(api)
        self.supervisor = SocktainerSupervisor(self.config, api)
        try:
            self.supervisor.ensure_running()
        except BaseException:
            api.close()
            raise

    @classmethod
    def connect(cls, socket: Optional[str] = None, **options: Any) -> AppleService:  # type: ignore[override]
        options.pop("namespace", None)
        return cls(AppleServiceConfig(socket_path=socket or "", **options))

    def close(self) -> None:
        try:
            self.supervisor.close()
        finally:
            self.api.close()

    # -- socktainer's behaviour (stopping: SocktainerStopPart) ----------------------------------------
    def delete_container(self, id: str, opts: Optional[DeleteContainerOptions] = None) -> None:
        opts = opts or DeleteContainerOptions()
        data = self.names.resolve(id)
        self.api.container_remove(data["Id"], force=True, volumes=opts.cleanup_snapshot)


F = TypeVar("F", bound=Callable[..., Any])


def _supervised(method: F) -> F:
    @functools.wraps(method)
    def call(self: AppleService, *args: Any, **kwargs: Any) -> Any:
        self.supervisor.ensure_running()
        return method(self, *args, **kwargs)

    return call  # type: ignore[return-value]


for _name in (*SERVICE_METHODS, "kill_task", "wait_task", "logs", "iter_logs", "events", "version",
              "container_events", "container_stats"):
    setattr(AppleService, _name, _supervised(getattr(AppleService, _name)))


__all__ = ["AppleService", "AppleServiceConfig", "SocktainerStopPart", "SocktainerSupervisor"]
