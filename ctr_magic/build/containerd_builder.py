"""A Dockerfile built on containerd, step by step (see the package docstring for the whole story).

Stages are built in order up to the target. Each instruction first changes the stage's config
(:mod:`.plan`); instructions that change files get a cache key, and either reuse the cached layer
or run on a fresh active snapshot (:mod:`.snapshots`): RUN in a container (:mod:`.runstep`),
COPY/ADD on the mounted snapshot (:mod:`.copier`), WORKDIR as a new directory. All of it happens
under one lease, deleted at the end: what the image records and the cache entries reference stays,
everything else goes.
"""

from __future__ import annotations

import copy
import glob
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any, Optional

from .. import errors
from ..containerd.leases import Lease
from ..containerd.spec import DirRootfs
from ..containerd.unpack import Unpacker
from ..platforms import parse_platform
from ..registry.manifests import Descriptor
from ..types import PullImageOptions
from .cache import BuildCache, CacheEntry, step_key
from .context import BuildContext
from .copier import Copier, make_dirs, resolve_chown
from .dockerfile import Dockerfile, Instruction, Stage
from .events import CACHED, DONE, FAILED, STARTED, BuildOptions, BuildResult, Reporter
from .failure import StepFailed
from .image import ImageState, now, write_image
from .plan import CopyAction, MkdirAction, RunAction, StageState, from_reference, global_arg_values, history_entry
from .runstep import RunStep
from .snapshots import BuildSnapshots

log = logging.getLogger(__name__)

_LEASE_EXPIRE = 6 * 3600.0


@dataclass
class StageResult:
    image: ImageState
    state: StageState
    chain: str
    key: str


def _base_key(*parts: str) -> str:
    return step_key("from", *parts)


class ContainerdBuilder:
    """One build of one Dockerfile on a DefaultService."""

    def __init__(self, service: Any, dockerfile: Dockerfile, context: BuildContext, options: BuildOptions,
                 stages: list[Stage], reporter: Reporter) -> None:
        self.svc = service
        self.df = dockerfile
        self.context = context
        self.options = options
        self.stages = stages
        self.reporter = reporter
        self.snapshotter = service.snapshotter
        self.build_id = secrets.token_hex(4)
        self.cache = BuildCache(service, self.snapshotter)
        self.global_args = global_arg_values(dockerfile.global_args, options.build_args)
        self.results: dict[int, StageResult] = {}
        self.number = 0
        self.used_args: set[str] = {i.value.partition("=")[0].strip() for i in dockerfile.global_args}

    # -- the whole build -------------------------------------------------------------------------------------
    def build(self) -> BuildResult:
        started = time.monotonic()
        lease = Lease(self.svc.client, "build", expire=_LEASE_EXPIRE).create()
        ok = False
        try:
            self.snaps = BuildSnapshots(self.svc, self.snapshotter, lease.id, self.build_id)
            self.runner = RunStep(self.svc, self.build_id, lease.id, self.reporter, net=self.options.net)
            for stage in self.stages:
                self.results[stage.index] = self._stage(stage)
            final = self.results[self.stages[-1].index]
            names = self.options.tags or []
            manifest = write_image(self.svc, final.image, final.state.config, final.chain,
                                   snapshotter=self.snapshotter, lease=lease.id, names=names)
            ok = True
        finally:
            lease.delete(sync=not ok)
        unused = sorted(n for n in self.options.build_args if n not in self.used_args)
        warnings = [f"build arguments not used by the Dockerfile: {', '.join(unused)}"] if unused else []
        return BuildResult(names=list(names), digest=manifest.digest, steps=list(self.reporter.steps),
                           seconds=time.monotonic() - started, warnings=warnings)

    # -- stages --------------------------------------------------------------------------------------------------
    def _stage(self, stage: Stage) -> StageResult:
        self.number += 1
        started = time.monotonic()
        ref = from_reference(stage.base, self.global_args)
        text = f"FROM {ref}" + (f" AS {stage.name}" if stage.name else "")
        self.reporter.step(self.number, text, STARTED)
        result = self._from(ref, stage)
        self.reporter.step(self.number, text, DONE, time.monotonic() - started)  # FROM: its time, as Docker
        for instr in stage.instructions:
            result = self._instruction(stage, instr, result)
        self.used_args |= result.state.used_args
        return result

    def _from(self, ref: str, stage: Stage) -> StageResult:
        earlier = next((r for i, r in self.results.items() if self.df.stages[i].name == ref.lower() and ref), None)
        if earlier is not None:
            state = StageState.from_image({"config": earlier.state.config}, self.options.build_args,
                                          self.global_args)
            return StageResult(earlier.image.copy(), state, earlier.chain, earlier.key)
        if ref == "scratch":
            image = ImageState.scratch()
            return StageResult(image, StageState.from_image(image.config, self.options.build_args, self.global_args),
                               "", _base_key("scratch"))
        platform_text = stage.platform or self.options.platform
        platform = parse_platform(from_reference(platform_text, self.global_args)) if platform_text else None
        try:
            resolved = self.svc.images.resolve(ref, platform)
        except errors.NotFound:
            self.svc.pull_image(ref, PullImageOptions(unpack=True, snapshotter=self.snapshotter,
                                                      platform=from_reference(platform_text, self.global_args)))
            resolved = self.svc.images.resolve(ref, platform)
        top = self._unpacked(resolved)
        image = ImageState(copy.deepcopy(resolved.config), [Descriptor.from_dict(d) for d in resolved.layers])
        image.config.setdefault("history", [])
        state = StageState.from_image(resolved.config, self.options.build_args, self.global_args)
        return StageResult(image, state, top, _base_key(resolved.manifest_digest))

    # -- instructions -------------------------------------------------------------------------------------------
    def _instruction(self, stage: Stage, instr: Instruction, prev: StageResult) -> StageResult:
        self.number += 1
        started = time.monotonic()
        text = instr.source or instr.text
        self.reporter.step(self.number, text, STARTED)
        state = prev.state
        action = state.apply(instr)
        if action is None:
            key = step_key(prev.key, instr.keyword, json.dumps(state.config, sort_keys=True))
            prev.image.add_history(history_entry(instr, now(), True))
            # A config-only step has nothing to cache: it shows its (tiny) time.
            self.reporter.step(self.number, text, DONE, time.monotonic() - started)
            return StageResult(prev.image, state, prev.chain, key)
        try:
            key, sources = self._key(prev, action)
            entry = None if self.options.no_cache else self.cache.lookup(key, self.snaps)
            status = CACHED
            if entry is None:
                status = DONE
                entry = self._execute(text, prev, action, sources)
                if entry is not None:
                    self.cache.store(key, entry)
        except BaseException as exc:
            self.reporter.step(self.number, text, FAILED, time.monotonic() - started)
            if isinstance(exc, errors.CtrError) and not isinstance(exc, StepFailed):
                # Name the step, as a failed RUN does: "step 3/7 `COPY app/ /srv/`: ... not found ..."
                raise type(exc)(f"step {self.number}/{self.reporter.total} `{text}`: {exc.message}",
                                hint=exc.hint) from None
            raise
        if entry is None:  # nothing changed (WORKDIR of an existing directory)
            prev.image.add_history(history_entry(instr, now(), True))
        else:
            prev.image.add_layer(entry.layer, entry.diff_id, history_entry(instr, now(), False, action))
        self.reporter.step(self.number, text, status, time.monotonic() - started)
        return StageResult(prev.image, state, entry.chain if entry else prev.chain, key)

    def _key(self, prev: StageResult, action: Any) -> tuple[str, Any]:
        if isinstance(action, RunAction):
            return step_key(prev.key, "RUN", json.dumps([action.argv, action.env, action.user, action.workdir,
                                                         self.options.net])), None
        if isinstance(action, MkdirAction):
            return step_key(prev.key, "WORKDIR", action.path), None
        assert isinstance(action, CopyAction)
        what = f"{'ADD' if action.add else 'COPY'}"
        if action.from_ref:
            source_chain = self._source_chain(action.from_ref)
            return step_key(prev.key, what, json.dumps([action.sources, action.dest, action.chown, action.chmod,
                                                        source_chain])), source_chain
        rels = sorted({rel for pattern in action.sources for rel in self.context.sources(pattern, what)})
        content = self.context.content_hash(rels)
        return step_key(prev.key, what, json.dumps([rels, action.dest, action.chown, action.chmod, action.add,
                                                    content])), rels

    def _source_chain(self, ref: str) -> str:
        for index, result in self.results.items():
            if self.df.stages[index].name == ref.lower() or ref == str(index):
                return result.chain
        try:
            resolved = self.svc.images.resolve(ref)
        except errors.NotFound:
            self.svc.pull_image(ref, PullImageOptions(unpack=True, snapshotter=self.snapshotter))
            resolved = self.svc.images.resolve(ref)
        return self._unpacked(resolved)

    def _unpacked(self, resolved: Any) -> str:
        """The image's top snapshot, held by the build's lease (unpacked first when it is not there)."""
        top: str = resolved.top_chain_id
        if not top:
            return ""
        self.snaps.hold(top)  # before looking, so garbage collection cannot take it in between
        if not self.snaps.exists(top):
            Unpacker(self.svc.client, self.snapshotter, lease=self.snaps.lease).unpack_all(
                [Descriptor.from_dict(d) for d in resolved.layers], resolved.diff_ids, resolved.config_digest)
        return top

    def _execute(self, text: str, prev: StageResult, action: Any, sources: Any) -> Optional[CacheEntry]:
        with self.snaps.active(prev.chain, f"{self.number}") as (key, mounts):
            if isinstance(action, RunAction):
                container_id = f"ctr-magic-build-{self.build_id}-{self.number}"
                code = self.runner.run(container_id, key, self.snapshotter, mounts, action)
                if code != 0:
                    raise StepFailed(self.number, self.reporter.total, text, code, self.reporter.tail.lines())
            elif isinstance(action, MkdirAction):
                with self.snaps.mounted(mounts, f"build step {self.number}") as root:
                    if os.path.isdir(DirRootfs(root).resolve(action.path)):
                        exists = True
                    else:
                        exists = False
                        make_dirs(DirRootfs(root), action.path)
                if exists:
                    self.snaps.remove(key)
                    return None
            else:
                self._copy(action, mounts, sources)
            layer, diff_id, chain = self.snaps.finish_layer(key, mounts, prev.chain, prev.image.diff_ids,
                                                            f"build step {self.number}: {text}")
        return CacheEntry(layer, diff_id, chain)

    def _copy(self, action: CopyAction, mounts: Any, sources: Any) -> None:
        with self.snaps.mounted(mounts, f"build step {self.number}") as root:
            owner = resolve_chown(action.chown, DirRootfs(root))
            if not action.from_ref:
                paths = [self.context.host_path(rel) for rel in sources]
                skip = None
                if self.context.ignore.rules:
                    def skip(host: str) -> bool:
                        return self.context.ignore.ignored(os.path.relpath(host, self.context.root))
                Copier(root, owner, action.chmod, skip).copy(paths, action.dest, add=action.add)
                return
            with self.snaps.mounted_view(sources, f"build step {self.number}: --from") as src_root:
                src = DirRootfs(src_root)
                paths = []
                for pattern in action.sources:
                    found = sorted(glob.glob(os.path.join(src_root, pattern.lstrip("/")))) \
                        if any(c in pattern for c in "*?[") else [src.resolve(pattern)]
                    found = [p for p in found if os.path.lexists(p)]
                    if not found:
                        raise errors.NotFound(f"COPY --from={action.from_ref}: {pattern!r} not found in that stage")
                    paths += found
                Copier(root, owner, action.chmod).copy(paths, action.dest)


__all__ = ["ContainerdBuilder"]
