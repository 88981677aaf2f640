"""Saved notebooks stay readable: a dashboard run in a real kernel (nbclient) and closed exports to nbconvert
HTML as its table; the stats chart as an image with alt text."""

from __future__ import annotations

from typing import Any

import nbclient
import nbformat
import pytest
from nbconvert import HTMLExporter
from tasks_support import new_id

from ctr_magic.types import ContainerSpec, CreateContainerRequest, DeleteContainerOptions


def test_dashboard_and_stats_render_in_nbconvert_html(environment: Any, namespace: str, service: Any,
                                                       test_images: dict[str, str], tmp_path: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cid = new_id("nbc")
    service.create_container(CreateContainerRequest(id=cid, image_ref=test_images["busybox"],
                                                    spec=ContainerSpec(cmd=["sleep", "100000"])))
    try:
        service.start_container(cid)
        monkeypatch.setenv("CTR_MAGIC_SOCKET", environment.containerd_socket)
        monkeypatch.setenv("CTR_MAGIC_NAMESPACE", namespace)
        monkeypatch.setenv("CTR_MAGIC_HOME", str(tmp_path / "home"))
        cells = ["%load_ext ctr_magic", "dash = %ctr dashboard --stats-interval 0\ndash", "dash.close()",
                 f"%ctr stats {cid} --watch --count 2 --interval 0.2",
                 # What the kernel's exit hook runs (the magic registers session.close with atexit):
                 # the session closes the views it opened.
                 "import threading\nlive = %ctr dashboard\nbefore = [t.name for t in threading.enumerate()"
                 " if t.name.startswith('ctr-')]\n"
                 "next(c for c in get_ipython().configurables if type(c).__name__ == 'CtrMagic').session.close()\n"
                 "print(len(before) >= 2, live.closed, [t.name for t in threading.enumerate()"
                 " if t.name.startswith('ctr-')])"]
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
        shown = nb.cells[1].outputs[0]["data"]
        # Closing the dashboard replaced its live widget, in place, with the table it showed last.
        assert "application/vnd.jupyter.widget-view+json" not in shown
        assert f"<td>{cid}</td>" in shown["text/html"] and cid in shown["text/plain"]
        page, _ = HTMLExporter().from_notebook_node(nb)
        assert f"<td>{cid}</td>" in page and "ctr-dashboard-static" in page and "closed</caption>" in page
        chart = next(o for o in nb.cells[3].outputs if "text/html" in o.get("data", {}))["data"]["text/html"]
        assert '<img src="data:image/png;base64,' in chart and 'alt="Line chart of CPU % and memory' in chart
        exit_output = "".join(o.get("text", "") for o in nb.cells[4].outputs)
        assert exit_output.strip() == "True True []", exit_output
    finally:
        service.delete_container(cid, DeleteContainerOptions(cleanup_snapshot=True, force=True))
