"""Pushing OCI layouts to the private (plain-HTTP) registry with skopeo, keeping their digests."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from .. import errors
from ..constants import (
    INDEX_MEDIA_TYPES,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_DOCKER_MANIFEST_LIST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
)
from ..ocilayout import Descriptor, OCILayout
from ..platforms import host_platform

log = logging.getLogger(__name__)


def skopeo_path() -> str:
    from ..env import find_binary  # lazily: the environment is not needed to build images

    return find_binary("skopeo")


_ACCEPT = ", ".join([MEDIA_OCI_MANIFEST, MEDIA_OCI_INDEX, MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_MANIFEST_LIST])


def registry_manifest_digest(registry_addr: str, repo: str, reference: str, *, timeout: float = 10.0) -> str | None:
    """Digest the (plain-HTTP) registry serves for ``repo:reference``, or None if unknown."""
    url = f"http://{registry_addr}/v2/{repo}/manifests/{reference}"
    req = urllib.request.Request(url, method="HEAD", headers={"Accept": _ACCEPT})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise errors.CtrError(f"registry {registry_addr}: HEAD {repo}:{reference} -> HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise errors.Unavailable(f"registry {registry_addr} unreachable: {exc}") from exc


def _run_skopeo(args: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    cmd = [skopeo_path(), "--insecure-policy", *args]
    log.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        raise errors.Unavailable(f"skopeo {args[0]} timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise errors.CtrError(f"skopeo {args[0]} failed: {msg[-1] if msg else proc.returncode}")
    return proc


def _expected_digest(layout: OCILayout, desc: Descriptor, all_platforms: bool) -> str:
    """The digest the registry will serve after the copy."""
    if desc.media_type not in INDEX_MEDIA_TYPES or all_platforms:
        return desc.digest
    host = host_platform().to_oci()
    index = layout.read_json(desc.digest)
    for m in index.get("manifests", []):  # type: ignore[union-attr]
        plat = m.get("platform") or {}
        if plat.get("os") == host["os"] and plat.get("architecture") == host["architecture"]:
            return str(m["digest"])
    raise errors.NotFound(f"index {desc.digest} has no manifest for {host['os']}/{host['architecture']}")


def publish(
    layout_dir: str | os.PathLike[str],
    registry_addr: str,
    repo: str,
    tag: str,
    *,
    all_platforms: bool = False,
    src_tag: str | None = None,
    force: bool = False,
    timeout: float = 600.0,
) -> str:
    """Push ``oci:<layout_dir>:<src_tag or tag>`` to ``<registry_addr>/<repo>:<tag>`` (plain HTTP).

    Digests are preserved (``--preserve-digests``), so the registry serves exactly the layout's
    manifest (or index with ``all_platforms``). Skips the copy when the registry already has
    that digest under the tag, unless ``force``. Returns the pushed manifest/index digest.
    """
    layout_path = Path(layout_dir).absolute()
    if ":" in str(layout_path):
        raise errors.InvalidArgument(f"OCI layout path must not contain ':': {layout_path}")
    layout = OCILayout(layout_path)
    source_tag = src_tag or tag
    expected = _expected_digest(layout, layout.resolve(source_tag), all_platforms)
    dest = f"docker://{registry_addr}/{repo}:{tag}"
    if not force and registry_manifest_digest(registry_addr, repo, tag) == expected:
        log.info("%s already at %s, skipping push", dest, expected)
        return expected
    t0 = time.monotonic()
    args = ["copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests"]
    if all_platforms:
        args.append("--all")
    _run_skopeo([*args, f"oci:{layout_path}:{source_tag}", dest], timeout)
    raw = _run_skopeo(["inspect", "--tls-verify=false", "--raw", dest], timeout).stdout
    pushed = "sha256:" + hashlib.sha256(raw).hexdigest()
    if pushed != expected:
        raise errors.CtrError(f"pushed {dest} but the registry serves {pushed}, expected {expected}")
    log.info("pushed %s (%s) in %.2fs", dest, pushed, time.monotonic() - t0)
    return pushed


__all__ = ["publish", "registry_manifest_digest", "skopeo_path"]
