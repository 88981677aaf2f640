"""A Dockerfile built by the Docker Engine (or socktainer): the context (``.dockerignore`` applied)
and the Dockerfile go as one tar to ``POST /build``; its JSON stream becomes the same step events
the containerd builder sends (``Step 3/8 : ...`` opens a step, `` ---> Using cache`` marks it
cached) and RUN output. The classic builder sends a RUN's stdout and stderr as one stream, so on
this backend both arrive as stdout.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any, Optional

from .. import errors
from ..reference import normalize
from .context import BuildContext
from .events import CACHED, DONE, FAILED, STARTED, BuildOptions, BuildResult, Reporter
from .failure import StepFailed

log = logging.getLogger(__name__)

DOCKERFILE_NAME = ".ctr-magic-build.Dockerfile"
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_CODE = re.compile(r"returned a non-zero code: (\d+)")
_NOISE = re.compile(r"^( ---> |Removing intermediate container |Successfully built |Successfully tagged )")
_CHUNK = 1 << 20
_SPOOL = 64 << 20


def _chunks(fh: IO[bytes]) -> Iterator[bytes]:
    while chunk := fh.read(_CHUNK):
        yield chunk


class DockerBuilder:
    """One build through ``/build`` (see module docstring)."""

    def __init__(self, service: Any, dockerfile: str, context: BuildContext, options: BuildOptions) -> None:
        self.svc = service
        self.dockerfile = dockerfile
        self.context = context
        self.options = options
        self.reporter = Reporter(options, 0)
        self.current: Optional[tuple[int, str, float, bool]] = None  # number, text, started, cached
        self.image_id = ""

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"dockerfile": DOCKERFILE_NAME, "rm": "1", "forcerm": "1",
                                  "networkmode": "default" if self.options.net else "none"}
        if self.options.tags:
            params["t"] = [normalize(t) for t in self.options.tags]
        if self.options.no_cache:
            params["nocache"] = "1"
        if self.options.build_args:
            params["buildargs"] = json.dumps(self.options.build_args)
        if self.options.target:
            params["target"] = self.options.target
        if self.options.platform:
            params["platform"] = self.options.platform
        return params

    def build(self) -> BuildResult:
        started = time.monotonic()
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as tar:
            self.context.write_tar(tar, extra={DOCKERFILE_NAME: self.dockerfile.encode()})
            tar.seek(0)
            what = f"building {', '.join(self.options.tags) or 'an image'} on the Docker Engine"
            self.svc.api.image_build(self._params(), _chunks(tar), on_line=lambda line: self._event(line, what),
                                     what=what)
        self._close_step(FAILED if not self.image_id else None)
        if not self.image_id:
            raise errors.CtrError(f"{what}: the Engine ended the build without an image id")
        return BuildResult(names=[normalize(t) for t in self.options.tags], digest=self.image_id,
                           steps=list(self.reporter.steps), seconds=time.monotonic() - started)

    # -- the stream ----------------------------------------------------------------------------------------
    def _event(self, line: str, what: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            log.debug("build: not JSON: %r", line)
            return
        if event.get("error") or event.get("errorDetail"):
            self._fail(str(event.get("error") or (event.get("errorDetail") or {}).get("message", "")), what)
        aux = event.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            self.image_id = str(aux["ID"])
        text = event.get("stream")
        if not isinstance(text, str):
            return
        for piece in text.splitlines(keepends=True):
            self._stream_line(piece)

    def _stream_line(self, piece: str) -> None:
        stripped = piece.rstrip("\n")
        match = _STEP.match(stripped)
        if match:
            self._close_step(None)
            number, total = int(match.group(1)), int(match.group(2))
            self.reporter.total = total
            self.current = (number, match.group(3), time.monotonic(), False)
            self.reporter.step(number, match.group(3), STARTED)
            return
        if stripped == " ---> Using cache" and self.current is not None:
            self.current = (*self.current[:3], True)
            return
        if _NOISE.match(stripped) or not self.current:
            return
        self.reporter.output("stdout", piece.encode())

    def _close_step(self, status: Optional[str]) -> None:
        if self.current is None:
            return
        number, text, started, cached = self.current
        self.current = None
        final = status or (CACHED if cached else DONE)
        self.reporter.step(number, text, final, time.monotonic() - started)

    def _fail(self, message: str, what: str) -> None:
        current = self.current
        self._close_step(FAILED)
        code = _CODE.search(message)
        if code and current is not None:
            raise StepFailed(current[0], self.reporter.total, current[1], int(code.group(1)),
                             self.reporter.tail.lines())
        where = f"step {current[0]}/{self.reporter.total} `{current[1]}`: " if current is not None else ""
        raise errors.CtrError(f"{what}: {where}{message.strip()}")


__all__ = ["DOCKERFILE_NAME", "DockerBuilder"]
