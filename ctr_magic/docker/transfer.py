"""Images in and out of an Engine API daemon: tag, push, import (load), export (save), commit.

Credentials for push (and pull) come from where containerd's registry client takes them:
``registry_options.credentials``, else the Docker config file (``$DOCKER_CONFIG``), and travel as
the ``X-Registry-Auth`` header. Import takes ``docker save`` tars as they are; a tar that is only
an OCI image layout (no ``manifest.json``, which Docker 20.10's load needs) gets one written from
its ``index.json`` on the way in.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Optional, Union

from .. import errors
from ..reference import normalize, parse_reference
from ..registry.dockerconfig import load_credentials
from ..registry.options import Credentials, RegistryOptions, host_name
from ..types import ImageInfo, LayerProgress
from .convert import image_info

if TYPE_CHECKING:
    from .api import EngineAPI
    from .images import ImagesPart
    from .names import ContainerNames

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_LOADED = re.compile(r"Loaded image(?: ID)?: (\S+)")
_PUSH_STATES = {
    "preparing": "waiting",
    "waiting": "waiting",
    "pushing": "uploading",
    "pushed": "done",
    "layer already exists": "exists",
    "mounted from": "exists",
}
_OCI_INDEX = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
_REF_NAME = "org.opencontainers.image.ref.name"
_CONTAINERD_NAME = "io.containerd.image.name"


def registry_auth_header(host: str, options: RegistryOptions) -> str:
    """The ``X-Registry-Auth`` value for *host* ("" when no credentials are known)."""
    creds: Optional[Credentials] = None
    for key in (host, host_name(host)):
        if key in options.credentials:
            creds = options.credentials[key]
            break
    if creds is None:
        creds = load_credentials(host, options.docker_config)
    if not creds:
        return ""
    doc = ({"identitytoken": creds.identity_token} if creds.identity_token
           else {"username": creds.username, "password": creds.password})
    doc["serveraddress"] = host
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


class TransferPart:
    """Tagging, Pushing, ImageArchives and Committing on the Engine API (a part of DockerService)."""

    def __init__(self, api: EngineAPI, images: ImagesPart, names: ContainerNames) -> None:
        self.api = api
        self.images = images
        self.names = names

    def _stored_name(self, ref: str) -> str:
        return self.images.stored_name(ref)

    # -- tag ---------------------------------------------------------------------------------------
    def tag_image(self, src: str, dst: str) -> ImageInfo:
        """Give the image *src* the name *dst* (``POST /images/{name}/tag``)."""
        target = parse_reference(dst)
        if target.digest:
            raise errors.InvalidArgument(f"cannot tag {src} as {dst}: a tag cannot carry a digest",
                                         hint="give name:tag")
        source = self._stored_name(src)
        self.api.image_tag(source, target.name, target.tag or "latest")
        return image_info(self.api.image_inspect(str(target)), name=str(target))

    # -- push --------------------------------------------------------------------------------------
    def push_image(self, ref: str, *, dest: str = "",
                   progress: Optional[Callable[[LayerProgress], None]] = None) -> str:
        """Push *ref* (as *dest* when given: tagged first); returns the manifest digest the registry has."""
        source = self._stored_name(ref)
        target = parse_reference(dest or source)
        if target.digest:
            raise errors.InvalidArgument(f"cannot push to {dest or ref}: give a tag, not a digest")
        full = str(target)
        if dest and normalize(dest) != source:
            self.api.image_tag(source, target.name, target.tag or "latest")
        digest = ""

        def on_event(event: dict[str, Any]) -> None:
            nonlocal digest
            aux = event.get("aux") or {}
            if aux.get("Digest"):
                digest = str(aux["Digest"])
            _push_progress(full, event, progress)

        self.api.image_push(target.name, target.tag or "latest",
                            auth=registry_auth_header(target.domain, self.images.registry_options), on_event=on_event,
                            what=f"pushing image {full}")
        return digest

    # -- import / export ---------------------------------------------------------------------------
    def import_image(self, source: Union[str, BinaryIO], *, name: str = "", unpack: bool = True) -> list[ImageInfo]:
        """Load a ``docker save`` or OCI-layout tar (path or binary file); *name* tags an unnamed image."""
        if name:
            parse_reference(name)
        with _open_source(source) as handle:
            events = self.api.images_load(_load_stream(handle))
        loaded = [m.group(1) for e in events for m in [_LOADED.search(str(e.get("stream", "")))] if m]
        if not loaded:
            raise errors.InvalidArgument("the archive held no image the daemon could load",
                                         hint="give a `docker save` or OCI image-layout tar")
        out = []
        for item in loaded:
            if item.startswith("sha256:") and name:
                target = parse_reference(name)
                self.api.image_tag(item, target.name, target.tag or "latest")
                item = str(target)
            out.append(image_info(self.api.image_inspect(item), name=item if not item.startswith("sha256:") else ""))
        return out

    def export_image(self, refs: list[str], dest: Union[str, BinaryIO]) -> None:
        """Write *refs* into one tar (``GET /images/get``) that `docker load` and containerd import."""
        if not refs:
            raise errors.InvalidArgument("export needs at least one image reference")
        names = [self._stored_name(ref) for ref in refs]
        if isinstance(dest, str):
            partial = f"{dest}.part-{os.getpid()}"
            try:
                with open(partial, "wb") as out, self.api.images_get(names) as chunks:
                    for chunk in chunks:
                        out.write(chunk)
                os.replace(partial, dest)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial)
            return
        with self.api.images_get(names) as chunks:
            for chunk in chunks:
                dest.write(chunk)

    # -- commit ------------------------------------------------------------------------------------
    def commit_container(self, container_id: str, image_ref: str, *, cmd: Optional[list[str]] = None,
                         env: Optional[list[str]] = None, message: str = "", replace: bool = False,
                         author: str = "") -> ImageInfo:
        """``POST /commit``: the container's files as image *image_ref*; *cmd*/*env* become its changes."""
        if not container_id or not image_ref:
            raise errors.InvalidArgument("commit_container: container_id and image_ref are required")
        target = parse_reference(image_ref)
        full = str(target)
        if not replace:
            with contextlib.suppress(errors.NotFound):
                self.api.image_inspect(full)
                raise errors.AlreadyExists(f"image {full} exists already", hint="pass replace=True (--replace)")
        changes = []
        if cmd is not None:
            changes.append(f"CMD {json.dumps(list(cmd))}")
        for item in env or []:
            if "=" not in item:
                raise errors.InvalidArgument(f"commit_container: env entry {item!r} is not KEY=VALUE")
            changes.append(f"ENV {item}")
        cid = self.names.target(container_id)
        self.api.commit(cid, target.name, target.tag or "latest", comment=message, author=author, changes=changes)
        return image_info(self.api.image_inspect(full), name=full)


def _push_progress(ref: str, event: dict[str, Any], callback: Optional[Callable[[LayerProgress], None]]) -> None:
    if callback is None or not event.get("id"):
        return
    status = str(event.get("status", "")).lower()
    state = next((s for key, s in _PUSH_STATES.items() if status.startswith(key)), "")
    if not state:
        return
    detail = event.get("progressDetail") or {}
    total = int(detail.get("total") or 0)
    done = int(detail.get("current") or 0)
    callback(LayerProgress(ref=ref, digest=str(event["id"]), done=total if state in ("done", "exists") else done,
                           total=total, state=state))


@contextlib.contextmanager
def _open_source(source: Union[str, BinaryIO]) -> Iterator[IO[bytes]]:
    if isinstance(source, str):
        if not os.path.isfile(source):
            raise errors.InvalidArgument(f"{source} is not a file", hint="give the path of an image tar")
        with open(source, "rb") as handle:
            yield handle
    else:
        yield source


def _load_stream(handle: IO[bytes]) -> Iterator[bytes]:
    """The tar to send to ``/images/load``: as it is, or with a ``manifest.json`` made from an OCI index."""
    try:
        seekable = handle.seekable()
    except (AttributeError, OSError):
        seekable = False
    if not seekable:
        yield from iter(lambda: handle.read(_CHUNK), b"")
        return
    start = handle.tell()
    try:
        with tarfile.open(fileobj=handle, mode="r:") as tar:
            names = {m.name.lstrip("./") for m in tar.getmembers()}
            manifest = None if "manifest.json" in names else _docker_manifest(tar)
    except tarfile.TarError as exc:
        raise errors.InvalidArgument(f"not an image archive: {exc}", hint="give a tar file") from None
    handle.seek(start)
    if manifest is None:
        yield from iter(lambda: handle.read(_CHUNK), b"")
        return
    yield from _with_member(handle, "manifest.json", manifest)


def _docker_manifest(tar: tarfile.TarFile) -> bytes:
    """``manifest.json`` for an OCI layout: one entry per image in ``index.json``."""
    def read_json(name: str) -> Any:
        member = tar.extractfile(name) or tar.extractfile("./" + name)
        if member is None:
            raise errors.InvalidArgument(f"image archive: {name} is missing")
        return json.load(member)

    def blob(digest: str) -> str:
        algo, _, hexpart = digest.partition(":")
        return f"blobs/{algo}/{hexpart}"

    try:
        index = read_json("index.json")
    except KeyError:
        raise errors.InvalidArgument("the archive has neither manifest.json nor index.json",
                                     hint="give a `docker save` or OCI image-layout tar") from None
    entries = []
    for desc in index.get("manifests") or []:
        name = (desc.get("annotations") or {}).get(_CONTAINERD_NAME) or (desc.get("annotations") or {}).get(_REF_NAME)
        while desc.get("mediaType") in _OCI_INDEX:
            children = read_json(blob(desc["digest"])).get("manifests") or []
            if not children:
                break
            desc = next((c for c in children if (c.get("platform") or {}).get("architecture") == _host_arch()),
                        children[0])
        manifest = read_json(blob(desc["digest"]))
        tags = [name] if name and ":" in name.rsplit("/", 1)[-1] else []
        entries.append({"Config": blob(manifest["config"]["digest"]), "RepoTags": tags,
                        "Layers": [blob(layer["digest"]) for layer in manifest.get("layers") or []]})
    return json.dumps(entries).encode()


def _host_arch() -> str:
    from ..platforms import host_platform

    return str(host_platform().architecture)


def _with_member(handle: IO[bytes], name: str, data: bytes) -> Iterator[bytes]:
    """The tar in *handle* with one more regular file at its end (before the end-of-archive blocks)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=handle, mode="r:") as source, tarfile.open(fileobj=buffer, mode="w:") as out:
        for member in source:
            out.addfile(member, source.extractfile(member) if member.isfile() else None)
            if buffer.tell() > _CHUNK:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        out.addfile(info, io.BytesIO(data))
    yield buffer.getvalue()


__all__ = ["TransferPart", "registry_auth_header"]
