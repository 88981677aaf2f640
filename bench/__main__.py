"""``python -m bench [name ...]``: start a private environment, run the benchmarks, print ratios.

Each ``bench/bench_*.py`` module exposes ``run(env) -> list[Comparison]`` where *env* is the
:class:`ctr_magic.env.EnvironmentInfo` of a private containerd + registry started for this run.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import tempfile
from pathlib import Path

from .runner import report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all), e.g. pull exec")
    parser.add_argument("--out", default="bench/results/latest.txt", help="where to save the report")
    args = parser.parse_args(argv)

    from ctr_magic.env import Environment

    modules = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    wanted = [m for m in modules if not args.names or m.removeprefix("bench_") in args.names]
    results = []
    with tempfile.TemporaryDirectory(prefix="ctr-magic-bench-") as base:
        env = Environment(base_dir=base)
        info = env.up()
        try:
            for name in wanted:
                module = importlib.import_module(f"bench.{name}")
                print(f"== {name}", flush=True)
                results.extend(module.run(info))
        finally:
            env.down()
    text = report(results)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
