"""``%%ctr build``: an image from a Dockerfile, on containerd (ctr-magic's own builder) or through
the Docker Engine's ``/build``.

The parts, each with one job:

- :mod:`.dockerfile` reads the Dockerfile (with ``dockerfile-parse``) into stages of instructions;
- :mod:`.words` and :mod:`.plan` hold Docker's rules: variable expansion, what each instruction
  does to the image config, and the action (run, copy, make a directory) it needs;
- :mod:`.context` is the build context: ``.dockerignore``, COPY sources, content hashes, the tar;
- :mod:`.cache`, :mod:`.snapshots`, :mod:`.overlaydiff`, :mod:`.runstep`, :mod:`.copier` and
  :mod:`.image` are the containerd side, put together by :mod:`.containerd_builder`;
- :mod:`.docker_builder` sends the context to the Engine API and turns its stream into steps.

Both report through :mod:`.events` and fail with :class:`.failure.StepFailed` in one line.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from .. import errors
from .context import BuildContext
from .dockerfile import Dockerfile, Stage, parse
from .events import BuildOptions, BuildResult, Reporter, StepEvent
from .failure import StepFailed

DEFAULT_DOCKERFILE = "Dockerfile"


def read_dockerfile(context_dir: str, dockerfile: str = "", file: str = "") -> str:
    """The Dockerfile text: *dockerfile* itself, else *file* (as ``docker build -f``: relative to the
    working directory, or failing that to the context), else CONTEXT/Dockerfile."""
    if dockerfile:
        return dockerfile
    candidates = [os.path.join(context_dir, DEFAULT_DOCKERFILE)]
    if file:
        candidates = [file] if os.path.isabs(file) else [os.path.abspath(file), os.path.join(context_dir, file)]
    for path in candidates:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        except (FileNotFoundError, IsADirectoryError):
            continue
    raise errors.NotFound(f"no Dockerfile at {candidates[0]}", hint="write the Dockerfile in the cell "
                          "(%%ctr build), or name it with -f FILE")


def stages_to_build(df: Dockerfile, target: str) -> list[Stage]:
    if not target:
        return list(df.stages)
    try:
        last = df.stage(target)
    except KeyError:
        names = ", ".join(s.name for s in df.stages if s.name) or "none"
        raise errors.InvalidArgument(f"no build stage named {target!r}", hint=f"stages: {names}") from None
    return df.stages[: last.index + 1]


def count_steps(stages: list[Stage]) -> int:
    return sum(1 + len(stage.instructions) for stage in stages)


def build_on_containerd(service: Any, dockerfile: str, context_dir: str, options: BuildOptions) -> BuildResult:
    """Build with ctr-magic's own builder on *service* (a DefaultService)."""
    from ..reference import normalize
    from .containerd_builder import ContainerdBuilder

    if not options.tags:
        raise errors.InvalidArgument("build_image on containerd needs a name for the image",
                                     hint="e.g. tags=['localhost/app:1'] (%ctr build -t NAME)")
    for tag in options.tags:
        normalize(tag)  # a bad name fails here, before anything is built
    df = parse(dockerfile)
    context = BuildContext(context_dir)
    stages = stages_to_build(df, options.target)
    reporter = Reporter(options, count_steps(stages))
    return ContainerdBuilder(service, df, context, options, stages, reporter).build()


def build_on_docker(service: Any, dockerfile: str, context_dir: str, options: BuildOptions) -> BuildResult:
    """Build through the Engine API's ``/build`` of *service* (a DockerService)."""
    from .docker_builder import DockerBuilder

    parse(dockerfile)  # the same one-line errors as on containerd, before anything is sent
    return DockerBuilder(service, dockerfile, BuildContext(context_dir), options).build()


def build_image(service: Any, backend: str, dockerfile: str = "", context: str = ".", *,
                tags: Optional[list[str]] = None, file: str = "", **options: Any) -> BuildResult:
    """What the services' ``build_image`` delegate to: read the Dockerfile, build on *backend*."""
    text = read_dockerfile(context, dockerfile, file)
    opts = BuildOptions(tags=[tags] if isinstance(tags, str) else list(tags or []), **options)
    if backend == "containerd":
        return build_on_containerd(service, text, context, opts)
    return build_on_docker(service, text, context, opts)


__all__ = [
    "DEFAULT_DOCKERFILE",
    "BuildOptions",
    "BuildResult",
    "StepEvent",
    "StepFailed",
    "build_image",
    "build_on_containerd",
    "build_on_docker",
    "count_steps",
    "read_dockerfile",
    "stages_to_build",
]
