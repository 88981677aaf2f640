"""Image commands: pull, images, rmi, tag, import, export, push."""

from __future__ import annotations

import os
import time
from typing import Any

from ... import features
from ...types import DeleteImageOptions
from . import imageref
from .context import Context
from .parsing import argument, command

HELP_ORDER = 20  # place of these commands in the %ctr --help overview


@command("pull", help="pull an image from a registry, with per-layer progress", completes="image")
@argument("ref", help="image reference, e.g. 127.0.0.1:5000/ctr-magic/busybox:latest")
@argument("--platform", default="", help="os/arch[/variant] to pull from a multi-platform image")
@argument("--no-unpack", action="store_true", help="fetch the content only; do not unpack layers")
@argument("-q", "--quiet", action="store_true", help="no progress display")
def pull(ctx: Context, args: Any) -> None:
    """Pull an image (layers are fetched concurrently; progress per layer).

    With a lock file (ctr-lock.json) listing REF, the locked digest is pulled instead.
    """
    ref = imageref.resolve(ctx, args.ref)
    imageref.pull(ctx, ref, typed=args.ref, platform=args.platform, unpack=not args.no_unpack, quiet=args.quiet)


@command("images", help="list images as a DataFrame (name, digest, size, created, platforms)")
@argument("filter", nargs="?", default="", help="show only images whose name contains this text")
def images(ctx: Context, args: Any) -> Any:
    """List images: `df = %ctr images` gives a DataFrame; sizes are bytes (shown human-readably)."""
    from ..frames import images_frame

    listing = [i for i in ctx.service.list_images() if args.filter in i.name]
    return images_frame(listing)


@command("rmi", help="delete images", completes="image")
@argument("refs", nargs="+", metavar="REF", help="image references")
@argument("--sync", action="store_true", help="wait until garbage collection removed the content")
def rmi(ctx: Context, args: Any) -> None:
    """Delete one or more images (all names are checked first: nothing is deleted if one is unknown)."""
    for ref in args.refs:
        ctx.service.get_image(ref)
    for ref in args.refs:
        ctx.service.delete_image(ref, DeleteImageOptions(synchronous=args.sync))
        ctx.say(f"deleted {ref}")


@command("tag", help="give an image another name", completes="image")
@argument("source", help="existing image")
@argument("target", help="new name")
def tag(ctx: Context, args: Any) -> None:
    """Tag an existing image with a new reference."""
    info = features.require(ctx.service, features.Tagging, "%ctr tag").tag_image(args.source, args.target)
    ctx.say(f"tagged {args.source} as {getattr(info, 'name', args.target)}")


@command("import", help="import an OCI or docker-save tar archive")
@argument("path", help="tar file (OCI image layout or `docker save` output)")
@argument("--name", default="", help="name for an archive whose images carry no name")
def import_(ctx: Context, args: Any) -> Any:
    """Import images from a tar file; returns them as a DataFrame."""
    from ..frames import images_frame

    archives = features.require(ctx.service, features.ImageArchives, "%ctr import")
    path = os.path.abspath(os.path.expanduser(args.path))
    if not os.path.isfile(path):
        from ...errors import InvalidArgument

        raise InvalidArgument(f"{path} is not a file")
    imported = archives.import_image(path, name=args.name)
    for info in imported:
        ctx.say(f"imported {info.name} {imageref.short_digest(info.id)}")
    return images_frame(imported)


@command("export", help="export images to an OCI tar archive", completes="image")
@argument("path", help="destination tar file")
@argument("refs", nargs="+", metavar="REF", help="images to export")
def export(ctx: Context, args: Any) -> None:
    """Export images into one OCI archive that `ctr images import` and `docker load` accept."""
    archives = features.require(ctx.service, features.ImageArchives, "%ctr export")
    path = os.path.abspath(os.path.expanduser(args.path))
    started = time.monotonic()
    archives.export_image(list(args.refs), path)
    ctx.say(f"exported {', '.join(args.refs)} to {path} in {time.monotonic() - started:.1f}s")


@command("push", help="push an image to its registry (or to --dest)", completes="image")
@argument("ref", help="image to push")
@argument("--dest", default="", help="push under this reference instead")
@argument("-q", "--quiet", action="store_true", help="no progress display")
def push(ctx: Context, args: Any) -> None:
    """Push an image; blobs the registry has already are skipped."""
    pusher = features.require(ctx.service, features.Pushing, "%ctr push")
    target = args.dest or args.ref
    with imageref.progress(ctx, f"push {target}", quiet=args.quiet) as display:
        started = time.monotonic()
        digest = pusher.push_image(args.ref, dest=args.dest, progress=display)
    ctx.say(f"pushed {target} {imageref.short_digest(str(digest))} in {time.monotonic() - started:.1f}s")
