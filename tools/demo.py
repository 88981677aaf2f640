"""``make demo``: run the tutorial notebooks headlessly and show where the results are.

Brings ctr-magic's private environment up (base dir ``$CTR_MAGIC_HOME``), executes
every tutorial notebook (``notebooks/01`` to ``03``) with nbclient over IPC sockets (outputs kept),
writes each executed notebook and an HTML rendering into ``--out``, prints their paths,
and exits non-zero when a notebook fails (the failing cell's one-line error is printed).

``--update-notebooks`` instead re-executes every notebook in place: the stored outputs are what
nbval compares against in ``make test`` (widget state and timings are left out).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("01-quickstart.ipynb", "02-data-science.ipynb", "03-snapshots-and-reproducibility.ipynb",
             "04-python-in-containers.ipynb")

log = logging.getLogger("demo")


def execute_notebook(source: Path, *, timeout: float = 1800.0) -> tuple[object, str]:
    """Run every cell of ``source`` in a fresh kernel (cwd: its directory); returns (notebook, error)."""
    import tempfile

    import nbclient
    import nbformat
    from traitlets.config import Config

    nb = nbformat.read(source, as_version=4)
    with tempfile.TemporaryDirectory(prefix="ctr-magic-kernel-") as sockets:
        # IPC (unix sockets in a private directory): nothing listens on TCP, and the kernel has no
        # reason to warn that its traffic is unencrypted. nbclient makes the manager, so it also
        # shuts the kernel down.
        config = Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}})
        client = nbclient.NotebookClient(
            nb,
            config=config,
            timeout=timeout,
            kernel_name="python3",  # jupyter_client starts it with this interpreter (sys.executable)
            resources={"metadata": {"path": str(source.parent)}},
            record_timing=False,
        )
        try:
            client.execute()
        except nbclient.exceptions.CellExecutionError as exc:
            return nb, _last_line(str(exc))
    return nb, ""


def _last_line(text: str) -> str:
    import re

    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [line for line in plain.splitlines() if line.strip()]
    return lines[-1] if lines else "cell failed"


def write_outputs(nb: object, out_dir: Path, name: str) -> tuple[Path, Path]:
    import nbformat
    from nbconvert import HTMLExporter

    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / name
    nbformat.write(nb, executed)
    html, _ = HTMLExporter().from_notebook_node(_alt_text_as_html(nb))
    page = executed.with_suffix(".html")
    page.write_text(html)
    return executed, page


def _alt_text_as_html(nb: object) -> object:
    """A copy of *nb* whose PNG outputs with alternative text (``Image(..., alt=...)``) are ``<img alt=...>``.

    nbconvert's lab template drops the ``alt`` metadata of an image output; as HTML it stays.
    """
    import copy
    import html

    nb = copy.deepcopy(nb)
    for cell in nb.cells:  # type: ignore[attr-defined]
        for output in cell.get("outputs", []):
            alt = (output.get("metadata", {}).get("image/png") or {}).get("alt")
            if alt and "image/png" in output.get("data", {}):
                png = output["data"].pop("image/png")
                output["data"]["text/html"] = f'<img src="data:image/png;base64,{png}" alt="{html.escape(alt)}">'
    return nb


def update_in_place(nb: object, path: Path) -> None:
    """Store ``nb`` as the reference for nbval, without volatile metadata."""
    import nbformat

    nb.metadata.pop("widgets", None)  # type: ignore[attr-defined]
    for cell in nb.cells:  # type: ignore[attr-defined]
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)


def print_daemon_facts(socket: str) -> None:
    """What the daemon itself says: version, namespaces and plugins (proof that we really talk to it)."""
    import ctr_magic

    with ctr_magic.connect(socket=socket) as svc:
        version = svc.version()
        plugins = svc.plugins()
        print(f"  containerd {version.version} (revision {version.revision}, uuid {version.uuid or '-'})")
        print(f"  namespaces: {', '.join(svc.namespaces()) or '(none yet)'}")
        broken = [f"{p.type}/{p.id}" for p in plugins if p.status != "ok"]
        kinds = sorted({p.type.rsplit(".", 2)[-2] if p.type.count(".") >= 2 else p.type for p in plugins})
        print(f"  plugins: {len(plugins)} loaded ({', '.join(kinds)})"
              + (f"; not loaded: {', '.join(broken)}" if broken else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="directory for executed notebooks and HTML (default: out)")
    parser.add_argument("--keep", action="store_true", help="leave the private environment running afterwards")
    parser.add_argument("--update-notebooks", action="store_true",
                        help="re-execute the notebooks in place (the outputs nbval compares against)")
    parser.add_argument("notebooks", nargs="*", help="notebooks under notebooks/ (default: all three)")
    args = parser.parse_args(argv)
    names = args.notebooks or list(NOTEBOOKS)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    sys.path.insert(0, str(ROOT))
    from ctr_magic.env import Environment

    env = Environment()  # $CTR_MAGIC_HOME, else /var/lib/ctr-magic
    already = env.status() is not None
    info = env.up()
    print(f"private containerd at {info.containerd_socket}, registry {info.registry_addr} ({env.base_dir})")
    print_daemon_facts(info.containerd_socket)
    out_dir = Path(args.out).resolve()
    failed = []
    try:
        for name in names:
            source = ROOT / "notebooks" / name
            started = time.monotonic()
            nb, error = execute_notebook(source)
            status = f"FAILED: {error}" if error else "ok"
            print(f"{name}: {status} in {time.monotonic() - started:.0f}s")
            if error:
                failed.append(name)
            if args.update_notebooks:
                if not error:
                    update_in_place(nb, source)
                    print(f"  updated {source}")
                continue
            executed, page = write_outputs(nb, out_dir, name)
            print(f"  executed notebook: {executed}")
            print(f"  HTML:              {page}")
    finally:
        if not already and not args.keep:
            env.down()
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    if not args.update_notebooks:
        print(f"open them with: make lab (JupyterLab on notebooks/), or the HTML files in {out_dir}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    sys.exit(main())
