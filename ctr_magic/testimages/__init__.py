"""Test and demo images, built offline and served from the private registry.

Used by the tests, the benchmarks, ``make demo`` and the tutorial notebooks; it sits in the package
(rather than under ``tests/``) because the notebooks and ``tools/demo.py`` import it from an
installed ctr-magic. ``busybox`` builds the presets into an OCI layout, ``publish`` pushes them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time

from ..ocilayout import BuiltImage, OCILayout
from .busybox import (
    BUSYBOX_APPLETS,
    busybox_layer,
    busybox_multi_layer,
    busybox_path,
    busybox_rootfs,
    busybox_single_layer,
    busybox_with_config,
    large_random_image,
    multi_platform_index,
    random_stream_file,
)
from .publish import publish, registry_manifest_digest, skopeo_path

log = logging.getLogger(__name__)


#: name -> (repository, tag) of the standard test images.
TEST_IMAGES: dict[str, tuple[str, str]] = {
    "busybox": ("ctr-magic/busybox", "latest"),
    "layers": ("ctr-magic/layers", "5"),
    "config": ("ctr-magic/config", "latest"),
    "multi": ("ctr-magic/multi", "latest"),
}


def build_test_images(layout: OCILayout | str | os.PathLike[str]) -> dict[str, BuiltImage]:
    """Build the standard test images into one layout; layout tags are the names."""
    lay = layout if isinstance(layout, OCILayout) else OCILayout(layout)
    return {
        "busybox": busybox_single_layer(lay, tag="busybox"),
        "layers": busybox_multi_layer(lay, 5, tag="layers"),
        "config": busybox_with_config(lay, tag="config"),
        "multi": multi_platform_index(lay, tag="multi"),
    }


def publish_test_images(registry_addr: str, *, work_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Build and push the standard test images; returns name -> ``<registry>/<repo>:<tag>``.

    Idempotent: images whose digest the registry already serves are not pushed again.
    """
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="ctr-magic-images-"))
        built = build_test_images(work_dir)
        refs: dict[str, str] = {}
        for name, image in built.items():
            repo, tag = TEST_IMAGES[name]
            publish(image.layout, registry_addr, repo, tag, src_tag=image.tag, all_platforms=image.is_index)
            refs[name] = f"{registry_addr}/{repo}:{tag}"
    log.info("test images ready on %s in %.2fs", registry_addr, time.monotonic() - t0)
    return refs


__all__ = [
    "BUSYBOX_APPLETS",
    "TEST_IMAGES",
    "build_test_images",
    "busybox_layer",
    "busybox_multi_layer",
    "busybox_path",
    "busybox_rootfs",
    "busybox_single_layer",
    "busybox_with_config",
    "large_random_image",
    "multi_platform_index",
    "publish",
    "publish_test_images",
    "random_stream_file",
    "registry_manifest_digest",
    "skopeo_path",
]
