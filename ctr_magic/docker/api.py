"""A small Docker Engine API client: one method per endpoint ctr-magic uses, plain dicts out.

Version negotiation: ``/_ping`` (its ``Api-Version`` header), else ``/version``; the version used
is the server's, capped at :data:`DOCKER_MAX_API_VERSION`. socktainer reports ``v1.51``: a
leading ``v`` is stripped.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, Optional

from .. import errors
from ..constants import DEFAULT_DOCKER_SOCKET, DOCKER_MAX_API_VERSION, DOCKER_MIN_API_VERSION, ENV_DOCKER_HOST
from .errors import first_line, stream_error
from .frames import ChunkReader, iter_frames
from .transport import HijackedConnection, Transport, json_body

log = logging.getLogger(__name__)

JSON = dict[str, Any]
#: Tars are asked for as they are: dockerd gzips a response whenever the client accepts it (httpx
#: does by default), and compressing image layers or random data costs the daemon more than it saves.
_RAW = {"Accept-Encoding": "identity"}


def parse_api_version(text: str) -> tuple[int, int]:
    """``"v1.51"`` or ``"1.41"`` -> ``(1, 51)``; raises InvalidArgument on anything else."""
    value = (text or "").strip().lstrip("vV")
    major, _, minor = value.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise errors.InvalidArgument(f"not an Engine API version: {text!r}", hint="expected e.g. 1.41")
    return int(major), int(minor)


def format_api_version(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _filters(filters: Optional[dict[str, list[str]]]) -> dict[str, str]:
    return {"filters": json.dumps(filters)} if filters else {}


def socket_from_env(socket: Optional[str] = None) -> str:
    """``socket`` (a path or ``unix://`` URL), else ``$DOCKER_HOST``, else ``/var/run/docker.sock``."""
    value = socket or os.environ.get(ENV_DOCKER_HOST) or DEFAULT_DOCKER_SOCKET
    if value.startswith("unix://"):
        value = value[len("unix://"):]
    elif "://" in value:
        raise errors.NotSupported(
            f"Docker address {value!r}: only unix sockets are supported",
            hint="pass the daemon's socket path, e.g. /var/run/docker.sock (forward a remote one with ssh -L)",
        )
    return value



def read_json_lines(resp: Any, what: str, kind: str, on_event: Optional[Callable[[JSON], None]]) -> None:
    """Hand each JSON line of a streamed Engine answer (pull, push, load) to *on_event*; an error line raises."""
    for line in resp.iter_lines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            log.debug("%s: not JSON: %r", kind, line)
            continue
        if event.get("error") or event.get("errorDetail"):
            detail = event.get("errorDetail") or {}
            raise stream_error(str(event.get("error") or detail.get("message", "")), what=what, kind=kind)
        if on_event is not None:
            on_event(event)

class EngineAPI:
    """Endpoints of the Engine API over a unix socket. Thread-safe (httpx pools connections)."""

    def __init__(
        self,
        socket_path: str,
        *,
        api_version: str = "",
        timeout: Optional[float] = 60.0,
        daemon: str = "the Docker daemon",
    ) -> None:
        self.transport = Transport(socket_path, timeout=timeout, daemon=daemon)
        self.socket_path = socket_path
        self._version: Optional[tuple[int, int]] = parse_api_version(api_version) if api_version else None
        self._lock = threading.Lock()

    # -- version --------------------------------------------------------------------------------------
    @property
    def api_version(self) -> str:
        """The negotiated API version (asks the daemon on first use)."""
        with self._lock:
            if self._version is None:
                self._version = self._negotiate()
            return format_api_version(self._version)

    def api_at_least(self, version: str) -> bool:
        return parse_api_version(self.api_version) >= parse_api_version(version)

    def _negotiate(self) -> tuple[int, int]:
        resp = self.transport.request("GET", "/_ping", what="pinging the Engine API", timeout=10.0)
        server = resp.headers.get("api-version", "")
        if not server:
            answer = self.transport.request("GET", "/version", what="asking the Engine API its version", timeout=10.0)
            server = str(json_body(answer, dict).get("ApiVersion", ""))
        version = parse_api_version(server)
        low, high = parse_api_version(DOCKER_MIN_API_VERSION), parse_api_version(DOCKER_MAX_API_VERSION)
        if version < low:
            raise errors.NotSupported(
                f"{self.transport.daemon} at {self.socket_path} speaks Engine API {server}, older than "
                f"{DOCKER_MIN_API_VERSION}",
                hint="upgrade the daemon",
            )
        chosen = min(version, high)
        log.debug("Engine API at %s: server %s, using %s", self.socket_path, server, format_api_version(chosen))
        return chosen

    def _path(self, path: str) -> str:
        return f"/v{self.api_version}{path}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.transport.request(method, self._path(path), **kwargs)

    def ping(self, timeout: float = 5.0) -> bool:
        """True when ``/_ping`` answers OK; raises Unavailable when the socket does not answer."""
        resp = self.transport.request("GET", "/_ping", what="pinging the Engine API", timeout=timeout)
        return resp.status_code == 200

    def version(self) -> JSON:
        data = json_body(self.transport.request("GET", "/version", what="asking the Engine API its version"), dict)
        if isinstance(data.get("ApiVersion"), str):
            data["ApiVersion"] = data["ApiVersion"].lstrip("vV")
        return data

    # -- images ---------------------------------------------------------------------------------------
    def image_pull(
        self,
        image: str,
        tag: str,
        *,
        platform: str = "",
        on_event: Optional[Callable[[JSON], None]] = None,
        what: str = "",
        auth: str = "",
    ) -> None:
        """``POST /images/create``; every progress line goes to *on_event*; an ``error`` line raises.

        *auth* is the ``X-Registry-Auth`` header (base64url JSON credentials), sent when given."""
        what = what or f"pulling {image}:{tag}"
        params = {"fromImage": image, "tag": tag}
        if platform:
            params["platform"] = platform
        headers = {"X-Registry-Auth": auth} if auth else None
        with self.transport.stream("POST", self._path("/images/create"), params=params, what=what,
                                   kind="pull", headers=headers) as resp:
            read_json_lines(resp, what, "pull", on_event)

    def image_inspect(self, name: str) -> JSON:
        return json_body(self._call("GET", f"/images/{name}/json", what=f"inspecting image {name}", kind="image"), dict)

    def images(self, *, filters: Optional[dict[str, list[str]]] = None) -> list[JSON]:
        return json_body(self._call("GET", "/images/json", params=_filters(filters), what="listing images"), list)

    def image_remove(self, name: str, *, force: bool = False, noprune: bool = False) -> list[JSON]:
        resp = self._call("DELETE", f"/images/{name}", params={"force": _flag(force), "noprune": _flag(noprune)},
                          what=f"deleting image {name}", kind="image")
        return json_body(resp, list) if resp.content else []

    # -- image transfer (tag, push, load, save, commit) ------------------------------------------------
    @contextlib.contextmanager
    def _served(self, what: str) -> Iterator[None]:
        """An endpoint the server does not route (socktainer serves a subset) is NotSupported, not NotFound."""
        try:
            yield
        except errors.NotFound as exc:
            if "page not found" not in str(exc).lower():
                raise
            raise errors.NotSupported(f"{what}: {self.transport.daemon} at {self.socket_path} does not serve it",
                                      hint="use the containerd or Docker backend") from None

    def image_tag(self, name: str, repo: str, tag: str) -> None:
        what = f"tagging image {name} as {repo}:{tag}"
        with self._served(what):
            self._call("POST", f"/images/{name}/tag", params={"repo": repo, "tag": tag}, what=what, kind="image")

    def image_push(self, name: str, tag: str, *, auth: str = "", on_event: Optional[Callable[[JSON], None]] = None,
                   what: str = "") -> None:
        """``POST /images/{name}/push``; *auth* is the X-Registry-Auth header; an ``error`` line raises."""
        what = what or f"pushing {name}:{tag}"
        headers = {"X-Registry-Auth": auth or "e30="}  # "{}" when anonymous: Docker wants the header
        with self._served(what), self.transport.stream("POST", self._path(f"/images/{name}/push"),
                                                       params={"tag": tag}, headers=headers, what=what,
                                                       kind="image") as resp:
            read_json_lines(resp, what, "push", on_event)

    def images_load(self, chunks: Iterator[bytes], *, what: str = "loading images") -> list[JSON]:
        """``POST /images/load`` with a tar (docker-save or OCI layout); the JSON lines it answered."""
        events: list[JSON] = []
        with self._served(what), self.transport.stream(
                "POST", self._path("/images/load"), params={"quiet": "1"}, content=chunks,
                headers={"Content-Type": "application/x-tar"}, what=what, kind="image") as resp:
            read_json_lines(resp, what, "load", events.append)
        return events

    @contextlib.contextmanager
    def images_get(self, names: list[str]) -> Iterator[Iterator[bytes]]:
        """``GET /images/get``: the tar of *names* (docker-save layout with an OCI index), as chunks."""
        what = f"exporting {', '.join(names)}"
        with self._served(what), self.transport.stream("GET", self._path("/images/get"),
                                                       params={"names": names}, headers=_RAW,  # type: ignore[dict-item]
                                                       what=what, kind="image") as resp:
            yield resp.iter_bytes()

    def commit(self, container: str, repo: str, tag: str, *, comment: str = "", author: str = "",
               changes: Optional[list[str]] = None, pause: bool = True) -> JSON:
        params = {"container": container, "repo": repo, "tag": tag, "comment": comment, "author": author,
                  "pause": _flag(pause)}
        if changes:
            params["changes"] = "\n".join(changes)
        what = f"committing container {container} as {repo}:{tag}"
        with self._served(what):
            return self._call("POST", "/commit", params=params, what=what, kind="container", timeout=None).json()

    # -- container files (archive) ---------------------------------------------------------------------
    def archive_stat(self, container: str, path: str) -> JSON:
        """``HEAD /containers/{id}/archive``: the path's stat (name, size, mode, linkTarget)."""
        what = f"looking up {path} in container {container}"
        with self._served(what):
            resp = self._call("HEAD", f"/containers/{container}/archive", params={"path": path}, what=what,
                              kind="path")
        header = resp.headers.get("x-docker-container-path-stat", "")
        return json.loads(base64.b64decode(header)) if header else {}

    @contextlib.contextmanager
    def archive_get(self, container: str, path: str) -> Iterator[Iterator[bytes]]:
        """``GET /containers/{id}/archive``: a tar of *path*, as chunks."""
        what = f"copying {path} out of container {container}"
        with self._served(what), self.transport.stream("GET", self._path(f"/containers/{container}/archive"),
                                                       params={"path": path}, headers=_RAW, what=what,
                                                       kind="path") as resp:
            yield resp.iter_bytes()

    def archive_put(self, container: str, path: str, chunks: Iterator[bytes]) -> None:
        """``PUT /containers/{id}/archive``: unpack a tar into the directory *path*."""
        what = f"copying into {path} in container {container}"
        with self._served(what):
            self._call("PUT", f"/containers/{container}/archive", params={"path": path}, content=chunks,
                       headers={"Content-Type": "application/x-tar"}, what=what, kind="path", timeout=None)

    # -- builds ------------------------------------------------------------------------------------------
    def image_build(self, params: dict[str, Any], context: Iterator[bytes], *, on_line: Callable[[str], None],
                    what: str) -> None:
        """``POST /build`` with a tar'd context streamed as the body; each line of the answer to *on_line*."""
        with self._served(what), self.transport.stream(
                "POST", self._path("/build"), params=params, what=what, kind="image", content=context,
                headers={"Content-Type": "application/x-tar"}) as resp:
            for line in resp.iter_lines():
                if line.strip():
                    on_line(line)

    def build_prune(self) -> JSON:
        what = "pruning the build cache"
        with self._served(what):
            return self._call("POST", "/build/prune", what=what).json()

    # -- containers -----------------------------------------------------------------------------------
    def container_create(self, name: str, body: JSON) -> JSON:
        return json_body(self._call("POST", "/containers/create", params={"name": name}, body=body,
                          what=f"creating container {name}", kind="container"), dict)

    def containers(self, *, all: bool = True, filters: Optional[dict[str, list[str]]] = None) -> list[JSON]:
        params = {"all": _flag(all), **_filters(filters)}
        return json_body(self._call("GET", "/containers/json", params=params, what="listing containers"), list)

    def container_inspect(self, name: str) -> JSON:
        return json_body(self._call("GET", f"/containers/{name}/json", what=f"inspecting container {name}",
                          kind="container"), dict)

    def container_update(self, name: str, body: JSON) -> JSON:
        return self._call("POST", f"/containers/{name}/update", body=body, what=f"updating container {name}",
                          kind="container").json()

    def container_start(self, name: str) -> bool:
        """False when it was running already (304)."""
        resp = self._call("POST", f"/containers/{name}/start", what=f"starting container {name}",
                          kind="container")
        return resp.status_code != 304

    def container_stop(self, name: str, *, t: int, signal: str = "", timeout: Optional[float] = None) -> bool:
        """``t`` is always sent (socktainer's own default is 5 s); False when it was stopped already (304)."""
        params = {"t": str(int(t))}
        if signal:
            params["signal"] = signal
        resp = self._call("POST", f"/containers/{name}/stop", params=params, what=f"stopping container {name}",
                          kind="container", timeout=timeout if timeout is not None else t + 30.0)
        return resp.status_code != 304

    def container_kill(self, name: str, signal: str = "SIGKILL") -> None:
        self._call("POST", f"/containers/{name}/kill", params={"signal": signal},
                   what=f"sending {signal} to container {name}", kind="container")

    def container_wait(self, name: str, *, condition: str = "not-running", timeout: Optional[float] = None) -> JSON:
        """Block until the condition holds; Interrupted when *timeout* passes first."""
        return json_body(self._call("POST", f"/containers/{name}/wait", params={"condition": condition},
                          what=f"waiting for container {name}", kind="container", timeout=timeout), dict)

    def container_remove(self, name: str, *, force: bool = False, volumes: bool = False) -> None:
        self._call("DELETE", f"/containers/{name}", params={"force": _flag(force), "v": _flag(volumes)},
                   what=f"deleting container {name}", kind="container")

    def container_logs(  # noqa: PLR0913  (the Engine API's query parameters)
        self,
        name: str,
        *,
        tty: bool,
        follow: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        tail: str = "all",
        since: int = 0,
        timestamps: bool = False,
        timeout: Optional[float] = None,
    ) -> Iterator[tuple[int, bytes]]:
        """``(stream, data)`` pieces of the container's log (*timeout*: longest silence, None: none)."""
        params = {"follow": _flag(follow), "stdout": _flag(stdout), "stderr": _flag(stderr), "tail": tail,
                  "timestamps": _flag(timestamps)}
        if since:
            params["since"] = str(since)
        with self.transport.stream("GET", self._path(f"/containers/{name}/logs"), params=params, timeout=timeout,
                                   what=f"reading the log of container {name}", kind="container") as resp:
            yield from iter_frames(ChunkReader(resp.iter_raw()).recv, multiplexed=not tty)

    def container_attach(self, name: str, *, stdin: bool = False) -> HijackedConnection:
        path = self._path(f"/containers/{name}/attach?stream=1&stdout=1&stderr=1&stdin={_flag(stdin)}")
        return self.transport.hijack(path, None, what=f"attaching to container {name}", kind="container")

    # -- exec -----------------------------------------------------------------------------------------
    def exec_create(self, container: str, body: JSON) -> str:
        resp = self._call("POST", f"/containers/{container}/exec", body=body,
                          what=f"creating an exec in container {container}", kind="container")
        return str(json_body(resp, dict).get("Id") or "")

    def exec_start(self, exec_id: str, *, tty: bool) -> HijackedConnection:
        return self.transport.hijack(self._path(f"/exec/{exec_id}/start"), {"Detach": False, "Tty": tty},
                                     what=f"starting exec {exec_id[:12]}", kind="exec")

    def exec_inspect(self, exec_id: str) -> JSON:
        return json_body(self._call("GET", f"/exec/{exec_id}/json", what=f"inspecting exec {exec_id[:12]}",
                          kind="exec"), dict)

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        self._call("POST", f"/exec/{exec_id}/resize", params={"h": str(height), "w": str(width)},
                   what=f"resizing exec {exec_id[:12]}", kind="exec")

    # -- events ---------------------------------------------------------------------------------------
    def events(
        self,
        *,
        since: str = "",
        until: str = "",
        filters: Optional[dict[str, list[str]]] = None,
    ) -> Iterator[JSON]:
        """The daemon's event stream (live until *until*, or until the caller stops iterating)."""
        params = _filters(filters)
        if since:
            params["since"] = since
        if until:
            params["until"] = until
        with self.transport.stream("GET", self._path("/events"), params=params, what="reading events") as resp:
            for line in resp.iter_lines():
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError:
                        log.debug("events: not JSON: %s", first_line(line))

    def close(self) -> None:
        self.transport.close()


__all__ = ["EngineAPI", "format_api_version", "parse_api_version", "read_json_lines", "socket_from_env"]
