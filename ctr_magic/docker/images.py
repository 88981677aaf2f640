"""The images part of DockerService: pull, look up, list and delete on the Engine API."""

from __future__ import annotations

import logging
from typing import Optional

from .. import errors
from ..reference import match_stored_name, parse_reference
from ..registry.options import RegistryOptions
from ..types import DeleteImageOptions, ImageInfo, PullImageOptions
from .api import EngineAPI
from .convert import image_info, image_summaries
from .progress import PullProgress
from .requests import require
from .transfer import registry_auth_header

log = logging.getLogger(__name__)


class ImagesPart:
    """Images as the daemon stores them; holds the registry options that pull and push use."""

    def __init__(self, api: EngineAPI) -> None:
        self.api = api
        self.registry_options = RegistryOptions.from_env()

    def pull_image(self, ref: str, opts: Optional[PullImageOptions] = None) -> ImageInfo:
        opts = opts or PullImageOptions()
        parsed = parse_reference(ref)
        full = str(parsed)
        if not opts.unpack or opts.snapshotter:
            log.debug("%s: Docker always unpacks into its own storage driver", full)
        progress = PullProgress(full, opts.progress)
        self.api.image_pull(parsed.name, parsed.digest or parsed.tag, platform=opts.platform,
                            on_event=progress, what=f"pulling image {full}",
                            auth=registry_auth_header(parsed.domain, self.registry_options))
        lookup = f"{parsed.name}@{parsed.digest}" if parsed.digest else full
        return image_info(self.api.image_inspect(lookup), name=full)

    def get_image(self, ref: str) -> ImageInfo:
        require(ref, "image reference", "give a name such as busybox:latest")
        full = str(parse_reference(ref))
        try:
            return image_info(self.api.image_inspect(full), name=full)
        except errors.NotFound:
            pass
        names = [info.name for info in self.list_images()]
        found = match_stored_name(ref, names)
        if found is None:
            raise errors.NotFound(f"image {ref} not found", hint="pull it first, or check list_images()")
        return image_info(self.api.image_inspect(found), name=found)

    def stored_name(self, ref: str) -> str:
        """The name under which the daemon has *ref* (NotFound naming it when it has none)."""
        return self.get_image(ref).name

    def list_images(self) -> list[ImageInfo]:
        out: list[ImageInfo] = []
        for entry in self.api.images():
            out.extend(image_summaries(entry))
        return sorted(out, key=lambda info: info.name)

    def delete_image(self, ref: str, opts: Optional[DeleteImageOptions] = None) -> None:
        # Docker deletes synchronously, so DeleteImageOptions.synchronous needs nothing more.
        parsed = parse_reference(ref)
        name = f"{parsed.name}@{parsed.digest}" if parsed.digest else str(parsed)
        self.api.image_remove(name)


__all__ = ["ImagesPart"]
