"""A failing %ctr in a real Jupyter kernel (nbclient): Run-All stops there, and the output is one line."""

from __future__ import annotations

import re

import nbclient
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook


def test_failed_magic_stops_run_all_with_one_line(tmp_path: object) -> None:
    nb = new_notebook(cells=[
        new_code_cell("%load_ext ctr_magic"),
        new_code_cell("%ctr run -v nonsense busybox"),
        new_code_cell("print('this cell must not run')"),
    ])  # fmt: skip
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3", record_timing=False)
    with pytest.raises(nbclient.exceptions.CellExecutionError):
        client.execute()
    failed = nb.cells[1].outputs
    assert len(failed) == 1 and failed[0].output_type == "error"
    assert failed[0].ename == "InvalidArgument"
    assert len(failed[0].traceback) == 1
    shown = re.sub(r"\x1b\[[0-9;]*m", "", failed[0].traceback[0])
    assert shown == "InvalidArgument: %ctr run: volume 'nonsense' is not SRC:DST[:ro]: e.g. -v ./data:/data:ro"
    assert nb.cells[2].get("outputs") == [] and nb.cells[2].get("execution_count") is None
    assert nbformat.validate(nb) is None


def test_raises_exception_tag_lets_a_tutorial_show_an_error() -> None:
    nb = new_notebook(cells=[
        new_code_cell("%load_ext ctr_magic"),
        new_code_cell("%ctr nosuch", metadata={"tags": ["raises-exception"]}),
        new_code_cell("print('went on')"),
    ])  # fmt: skip
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    assert nb.cells[1].outputs[0].ename == "InvalidArgument"
    assert nb.cells[2].outputs[0].text == "went on\n"
