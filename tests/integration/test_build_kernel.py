"""%%ctr build in a real Jupyter kernel (nbclient), as a person sees it in the notebook: step lines and
RUN output on the cell's stdout, RUN's stderr on its stderr stream, and a failed step as one error line
that stops Run-All."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import nbclient
import pytest
from nbformat.v4 import new_code_cell, new_notebook


def _text(outputs: list[Any], name: str) -> str:
    return "".join(o.text for o in outputs if o.output_type == "stream" and o.name == name)


def test_build_cell_in_a_kernel(environment: Any, test_images: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("data for the kernel test\n")
    namespace = f"ctr-magic-test-kernel-{secrets.token_hex(3)}"
    name = f"localhost/ctr-magic-test/kernel-build:{secrets.token_hex(3)}"
    base = test_images["busybox"]
    nb = new_notebook(cells=[
        new_code_cell("%load_ext ctr_magic"),
        new_code_cell(f"%config CtrMagic.socket = {environment.containerd_socket!r}\n"
                      f"%config CtrMagic.namespace = {namespace!r}"),
        new_code_cell(f"%%ctr build -t {name} {tmp_path}\nFROM {base}\nCOPY data.txt /\n"
                      "RUN cat /data.txt; echo 'to stderr' >&2\n"),
        new_code_cell(f"%%ctr build -t {name} {tmp_path}\nFROM {base}\nRUN echo failing; exit 7\n"),
        new_code_cell("print('this cell must not run')"),
    ])  # fmt: skip
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", record_timing=False)
    try:
        with pytest.raises(nbclient.exceptions.CellExecutionError):
            client.execute()
        built = nb.cells[2].outputs
        out = _text(built, "stdout")
        assert re.search(r"^step 2/3 COPY data.txt /  \d+\.\ds$", out, re.M)
        assert "step 3/3 RUN cat /data.txt; echo 'to stderr' >&2\ndata for the kernel test\n" in out
        assert re.search(rf"^built {re.escape(name)} sha256:[0-9a-f]{{12}} in ", out, re.M)
        assert _text(built, "stderr") == "to stderr\n"
        failed = nb.cells[3].outputs
        errors = [o for o in failed if o.output_type == "error"]
        assert len(errors) == 1 and errors[0].ename == "StepFailed" and len(errors[0].traceback) == 1
        shown = re.sub(r"\x1b\[[0-9;]*m", "", errors[0].traceback[0])
        assert shown == "StepFailed: %ctr build: step 2/2 `RUN echo failing; exit 7` exited with code 7"
        assert "failing\n" in _text(failed, "stdout")  # the step's output, above the error
        assert nb.cells[4].get("outputs") == []
    finally:
        from ctr_magic.containerd.service import DefaultService

        with DefaultService.connect(environment.containerd_socket, namespace) as svc:
            for image in svc.list_images():
                svc.delete_image(image.name)
            svc.prune_build_cache()
            svc.delete_namespace(namespace)
