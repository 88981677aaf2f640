"""Helpers for the build tests: image file trees (layers applied in order, whiteouts honoured) and
leftover checks."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable
from typing import Any

Tree = dict[str, tuple[str, int, int, int, str]]


def apply_layer(tree: Tree, layer: bytes) -> None:
    """Apply one layer tar (any compression) to *tree*: path -> (kind, mode, uid, gid, content)."""
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:*") as tar:
        for member in tar:
            path = "/" + member.name.lstrip("./").rstrip("/")
            if path == "/":
                continue
            parent, _, base = path.rpartition("/")
            if base == ".wh..wh..opq":
                for key in [k for k in tree if k.startswith(parent + "/")]:
                    del tree[key]
                continue
            if base.startswith(".wh."):
                gone = f"{parent}/{base[4:]}"
                for key in [k for k in tree if k == gone or k.startswith(gone + "/")]:
                    del tree[key]
                continue
            if member.isdir():
                entry = ("dir", member.mode & 0o7777, member.uid, member.gid, "")
            elif member.issym():
                entry = ("symlink", 0o777, member.uid, member.gid, member.linkname)
            elif member.isfifo() or member.ischr() or member.isblk():
                entry = ("special", member.mode & 0o7777, member.uid, member.gid,
                         f"{member.type!r}:{member.devmajor}:{member.devminor}")
            elif member.islnk():
                target = tree.get("/" + member.linkname.lstrip("./"))
                entry = ("file", member.mode & 0o7777, member.uid, member.gid, target[4] if target else "")
            else:
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                entry = ("file", member.mode & 0o7777, member.uid, member.gid, hashlib.sha256(data).hexdigest())
            tree[path] = entry


def flatten(layers: Iterable[bytes]) -> Tree:
    tree: Tree = {}
    for layer in layers:
        apply_layer(tree, layer)
    return tree


def containerd_image(service: Any, ref: str) -> tuple[Tree, dict[str, Any]]:
    """(file tree, config document) of an image in containerd's content store."""
    resolved = service.images.resolve(ref)
    tree = flatten(service.content.read(layer["digest"]) for layer in resolved.layers)
    return tree, resolved.config


def docker_image(docker: Any, ref: str) -> tuple[Tree, dict[str, Any]]:
    """(file tree, config document) of an image in dockerd, read from ``docker save``."""
    with docker.api.images_get([ref]) as chunks:
        data = b"".join(chunks)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())[0]  # type: ignore[union-attr]
        config = json.loads(tar.extractfile(manifest["Config"]).read())  # type: ignore[union-attr]
        tree = flatten(tar.extractfile(p).read() for p in manifest["Layers"])  # type: ignore[union-attr]
    return tree, config


RUNTIME_FIELDS = ("Env", "Cmd", "Entrypoint", "User", "WorkingDir", "Labels", "ExposedPorts", "Volumes", "StopSignal",
                  "Healthcheck", "Shell")


def runtime_fields(config: dict[str, Any]) -> dict[str, Any]:
    runtime = config.get("config") or {}
    return {k: runtime.get(k) or None for k in RUNTIME_FIELDS}


def build_leftovers(service: Any) -> dict[str, list[str]]:
    """Build containers, build snapshots (active or view) and build leases other than cache entries."""
    from ctr_magic.build.cache import LEASE_PREFIX
    from ctr_magic.build.runstep import LABEL_BUILD
    from ctr_magic.build.snapshots import KEY_PREFIX
    from ctr_magic.containerd.leases import list_leases

    return {
        "containers": [c.id for c in service.list_containers() if LABEL_BUILD in c.labels],
        "snapshots": [s.name for s in service.list_snapshots(service.snapshotter, usage=False)
                      if s.name.startswith(KEY_PREFIX)],
        "leases": [lease.id for lease in list_leases(service.client)
                   if "build" in lease.id and not lease.id.startswith(LEASE_PREFIX)],
    }


NOTHING = {"containers": [], "snapshots": [], "leases": []}
