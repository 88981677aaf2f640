"""``ctr-magic up [--docker] | down | status``: manage the private containerd + registry."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from ctr_magic import errors
from ctr_magic.env import Environment, EnvironmentInfo, default_base_dir

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctr-magic", description="Manage ctr-magic's private containerd, registry and dockerd."
    )
    parser.add_argument(
        "--home",
        metavar="DIR",
        help=f"base directory (default: $CTR_MAGIC_HOME or {default_base_dir()})",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log progress to stderr (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="start the environment (no-op if running)")
    up.add_argument("--docker", action="store_true", help="also start a private dockerd on that containerd")
    up.add_argument("--json", action="store_true", help="print the environment as JSON")
    up.add_argument("--swarm", type=int, default=None, metavar="N",
                    help="instead: a local Swarm test cluster of N dockerd nodes (see ctr_magic.swarm.cluster)")
    sub.add_parser("down", help="kill all tasks and stop everything")
    status = sub.add_parser("status", help="show the running environment (exit 3 if not running)")
    status.add_argument("--json", action="store_true", help="print the environment as JSON")
    return parser


def _print_info(info: EnvironmentInfo, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**info.to_dict(), "env": info.env()}, indent=2))
        return
    print(f"containerd socket: {info.containerd_socket}")
    print(f"registry:          {info.registry_addr}")
    if info.docker_host:
        print(f"docker host:       {info.docker_host}")
    print(f"base dir:          {info.base_dir}")
    pids = ", ".join(f"{name} {pid}" for name, pid in info.pids.items())
    print(f"pids:              {pids}")
    print()
    for key, value in info.env().items():
        print(f"export {key}={value}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    env = Environment(args.home)
    try:
        if args.command == "up" and args.swarm is not None:
            from ctr_magic.swarm.clihook import swarm_up

            print(swarm_up(env.base_dir, args.swarm, as_json=args.json))
        elif args.command == "up":
            _print_info(env.up(with_docker=args.docker), args.json)
        elif args.command == "down":
            from ctr_magic.swarm.clihook import swarm_down

            swarm_down(env.base_dir)
            env.down()
            print(f"stopped ({env.base_dir})")
        else:
            info = env.status()
            if info is None:
                if args.json:
                    print("null")
                else:
                    print(f"not running ({env.base_dir})")
                return EXIT_NOT_RUNNING
            _print_info(info, args.json)
    except errors.CtrError as exc:
        print(f"ctr-magic: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"ctr-magic: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("ctr-magic: interrupted", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
