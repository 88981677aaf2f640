"""Snapshot commands: snapshots, commit, checkpoint, mount, umount."""

from __future__ import annotations

import contextlib
from typing import Any

from ... import features
from ...constants import LABEL_CHECKPOINT_CONTAINER, LABEL_CHECKPOINT_VERSION
from ...errors import InvalidArgument, NotFound
from . import imageref
from .context import Context
from .parsing import argument, command

HELP_ORDER = 50  # place of these commands in the %ctr --help overview


@command("snapshots", help="list snapshots as a DataFrame (kind, parent, size)")
@argument("--snapshotter", default="", help="snapshotter (default: the service's, usually overlayfs)")
def snapshots(ctx: Context, args: Any) -> Any:
    """All snapshots of a snapshotter with their kind (active/committed/view), parent and disk usage."""
    from ..frames import snapshots_frame

    return snapshots_frame(ctx.service.list_snapshots(args.snapshotter or ctx.snapshotter))


@command("commit", help="save a container's filesystem as a new image", completes="container")
@argument("id", help="container id")
@argument("image", help="new image reference, e.g. 127.0.0.1:5000/me/analysis:v1")
@argument("-m", "--message", default="", help="history comment")
@argument("-a", "--author", default="", help="the image's author, e.g. 'Ada <ada@example.org>'")
@argument("--cmd", nargs="+", default=None, help="new default command (put it last)")
@argument("-e", "--env", action="append", default=None, metavar="KEY=VALUE", help="replace the image's Env")
@argument("--replace", action="store_true", help="overwrite an existing image of that name")
def commit(ctx: Context, args: Any) -> None:
    """Diff the container's snapshot against its image and store the change as a new image layer."""
    from ...reference import parse_reference
    from . import argtypes

    committer = features.require(ctx.service, features.Committing, "%ctr commit")
    parse_reference(args.image)
    env = argtypes.parse_env(args.env) if args.env is not None else None
    info = committer.commit_container(args.id, args.image, cmd=args.cmd, env=env, message=args.message,
                                      replace=args.replace, author=args.author)
    ctx.session.record_image(args.image, info.id)
    ctx.say(f"committed {args.id} as {info.name} {imageref.short_digest(info.id)}")


@command("checkpoint", help="save a stopped container's files as a named version (--rm deletes one)",
         completes="container")
@argument("id", help="container id (its task must not be running)")
@argument("version", help="version name, e.g. v1")
@argument("--rm", action="store_true", help="delete that version instead")
def checkpoint(ctx: Context, args: Any) -> None:
    """Keep the container's current files as version VERSION; the container continues from it.

    The version is the snapshot ID@VERSION: new containers start from it with
    `%ctr run --from ID@VERSION IMAGE ...`. Versions stay until `%ctr checkpoint --rm ID VERSION`.
    """
    service = features.require(ctx.service, features.Checkpoints, "%ctr checkpoint")
    if args.rm:
        remover = features.require(ctx.service, features.SnapshotRemoval, "%ctr checkpoint --rm")
        found = [s for s in service.list_checkpoints(args.id) if _version_of(s) == args.version]
        if not found:
            raise NotFound(f"container {args.id!r} has no checkpoint {args.version!r}",
                           hint=f"%ctr checkpoints {args.id} lists them")
        remover.remove_snapshot(ctx.snapshotter, found[0].name)
        ctx.say(f"removed checkpoint {found[0].name}")
        return
    result = service.checkpoint(args.id, args.version)
    ctx.say(f"saved checkpoint {result.version_snapshot_name}; {args.id} continues from it "
            f"(new containers: --from {result.version_snapshot_name})")


def _version_of(snapshot: Any) -> str:
    return snapshot.labels.get(LABEL_CHECKPOINT_VERSION, "")


@command("checkpoints", help="list checkpoint versions as a DataFrame", completes="container")
@argument("id", nargs="?", default="", help="only this container's versions")
def checkpoints(ctx: Context, args: Any) -> Any:
    """Checkpoint versions, oldest first: snapshot name, container, version, size, created."""
    from ..frames import snapshots_frame

    listing = features.require(ctx.service, features.Checkpoints, "%ctr checkpoints").list_checkpoints(args.id)
    df = snapshots_frame(listing)
    by_name = {s.name: s for s in listing}
    df.insert(1, "container", [by_name[n].labels.get(LABEL_CHECKPOINT_CONTAINER, "") for n in df["name"]])
    df.insert(2, "version", [_version_of(by_name[n]) for n in df["name"]])
    df = df.sort_values("created", kind="stable").reset_index(drop=True)
    return df[["name", "container", "version", "size", "created"]]


@command("mount", help="mount a container's filesystem on the host; returns the directory", completes="container")
@argument("id", help="container id")
@argument("--ro", action="store_true", help="read-only view")
def mount(ctx: Context, args: Any) -> str:
    """Mount the container's snapshot on a host directory (`path = %ctr mount ID`); `%ctr umount ID` undoes it."""
    if args.id in ctx.session.mounts:
        return str(ctx.session.mounts[args.id].dir)
    import ctr_magic

    mounted = ctr_magic.mount_container_snapshot(ctx.service, args.id, read_only=args.ro)
    ctx.session.mounts[args.id] = mounted
    ctx.say(f"mounted {args.id} at {mounted.dir}" + (" (read-only)" if args.ro else ""))
    return str(mounted.dir)


@command("umount", help="unmount what %ctr mount mounted", completes="mount")
@argument("targets", nargs="*", metavar="ID", help="container ids (or mount directories)")
@argument("--all", action="store_true", help="unmount everything this session mounted")
def umount(ctx: Context, args: Any) -> None:
    """Unmount and remove the temporary directory (safe to repeat)."""
    if not args.targets and not args.all:
        raise InvalidArgument("name a container (or use --all)")
    keys = list(ctx.session.mounts) if args.all else []
    for target in args.targets:
        key = next((k for k, m in ctx.session.mounts.items() if target in (k, str(m.dir))), None)
        if key is None:
            raise NotFound(f"{target} is not mounted by this session", hint="see %ctr mount")
        keys.append(key)
    for key in keys:
        mounted = ctx.session.mounts.pop(key, None)
        if mounted is not None:
            with contextlib.suppress(FileNotFoundError):
                mounted.unmount()
            ctx.say(f"unmounted {key}")
