"""The widget views in JupyterLab 4 and Notebook 7 with Chromium: what a person sees, read from the DOM.

A notebook pulls an image (bars reach 100 % and collapse to the summary line), starts a container,
opens the dashboard, a console and the live stats chart; the test runs it through the front end's own
Run menu (the same menu item in both), then checks each view, clicks Stop, types into the console,
measures how long a container made with ``ctr`` takes to appear as a row, and closes the dashboard
from a last cell that reports the widget and thread counts before and after ``close()``.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from ctr_magic.env import EnvironmentInfo, find_binary

pytestmark = pytest.mark.slow

DEADLINE_MS = 60_000  # generous: the machine is shared


def _notebook(path: Path, image: str, layers_image: str, box: str) -> None:
    cells = [
        "%load_ext ctr_magic\n%config CtrMagic.progress = 'widgets'\n%config CtrMagic.stop_timeout = 2.0",
        f"%ctr pull {layers_image}",
        f"%ctr run -d --name {box} {image} -- sh -c 'while :; do :; done'",
        "dash = %ctr dashboard --stats-interval 1\ndash",
        f"%ctr console {box}",
        f"%ctr stats {box} --watch --count 8 --interval 0.5",
        "import threading, ipywidgets\n"
        "def counts():\n"
        "    return len(ipywidgets.widgets.widget._instances), threading.active_count()\n"
        "before = counts()\n"
        "dash.close()\n"
        "print('COUNTS', before, counts(), sorted(t.name for t in threading.enumerate() if t.name.startswith('ctr-')))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def _menu(page: Any, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).first.click()


def _run_all_above(page: Any, last: int) -> None:
    """Select the last cell and use Run > Run All Above Selected Cell (again if the click did not take)."""
    first_prompt = page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputPrompt")
    for _attempt in range(3):
        _cell(page, last).locator(".jp-InputPrompt").click()
        _menu(page, "Run", "Run All Above Selected Cell")
        try:
            page.wait_for_function("el => /\\[(\\*|\\d+)\\]/.test(el.textContent)",
                                   arg=first_prompt.element_handle(), timeout=15_000)
            return
        except Exception:
            page.keyboard.press("Escape")
    raise AssertionError("the front end did not start running the notebook from its Run menu")


def _cell(page: Any, index: int) -> Any:
    return page.locator(".jp-Notebook .jp-Cell").nth(index)


def _wait_executed(page: Any, index: int) -> None:
    prompt = _cell(page, index).locator(".jp-InputPrompt")
    try:
        page.wait_for_function("el => /\\[\\d+\\]/.test(el.textContent)", arg=prompt.element_handle(),
                               timeout=DEADLINE_MS * 3)
    except Exception:
        outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
        raise AssertionError(f"cell {index} did not run; the outputs say:\n" + "\n---\n".join(outputs)) from None


def _ctr(env: EnvironmentInfo, namespace: str, *args: str) -> None:
    subprocess.run([find_binary("ctr"), "--address", env.containerd_socket, "--namespace", namespace, *args],
                   check=True, capture_output=True, timeout=120)


def test_views_in_the_browser(browser: Any, jupyter: Any, browser_env: EnvironmentInfo,
                              browser_images: dict[str, str], screenshots: Path) -> None:
    lab = jupyter
    # JupyterLab's shots keep their documented names (docs/img); Notebook 7's carry its name.
    shot = "" if lab.front_end.name == "jupyterlab4" else f"{lab.front_end.name}-"
    box = f"box-{secrets.token_hex(3)}"
    _notebook(lab.root / "views.ipynb", browser_images["busybox"], browser_images["layers"], box)
    page = browser.new_page(viewport={"width": 1800, "height": 1100})
    page.set_default_timeout(DEADLINE_MS)  # every click and wait: the machine is shared
    step = "open and run the notebook"
    started = time.monotonic()
    try:
        page.goto(lab.notebook_url("views.ipynb"))
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=DEADLINE_MS)
        # The front end is the one asked for: Notebook 7 keeps its own URL and has no JupyterLab shell.
        is_lab_shell = page.locator(".jp-LabShell").count() > 0
        assert is_lab_shell == (lab.front_end.name == "jupyterlab4"), (lab.front_end.name, page.url)
        assert "/notebooks/views.ipynb" in page.url or is_lab_shell, page.url
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=DEADLINE_MS)
        last = 6
        _run_all_above(page, last)
        for index in range(last):
            _wait_executed(page, index)

        step = "pull summary"
        # 1. pull: the summary line, the bars behind "details" all at 100 %.
        pull = _cell(page, 1).locator(".ctr-progress")
        summary = pull.locator(".ctr-progress-summary")
        summary.wait_for(timeout=DEADLINE_MS)
        assert re.search(r"sha256:[0-9a-f]{12} .*B in [\d.]+s \(.*/s\)", summary.inner_text()), summary.inner_text()
        assert not pull.locator(".ctr-progress-bars").is_visible(), "the bars collapse behind details"
        pull.locator("button", has_text="details").click(force=True)
        bars = pull.locator(".ctr-progress-bar")
        bars.first.wait_for(state="visible", timeout=DEADLINE_MS)
        widths = pull.locator(".ctr-progress-bar .progress-bar").evaluate_all(
            "els => els.map(e => e.style.width || getComputedStyle(e).width)")
        assert len(widths) >= 5 and all(w == "100%" for w in widths), widths
        pull.screenshot(path=str(screenshots / f"{shot}view-pull.png"))

        step = "dashboard row"
        # 2. dashboard: the container's row, running.
        dashboard = _cell(page, 3).locator(".ctr-dashboard")
        row = dashboard.locator(f".ctr-row-{box}")
        row.locator("[data-status='running']").wait_for(timeout=DEADLINE_MS)
        dashboard.locator(".ctr-row").first.wait_for(timeout=DEADLINE_MS)
        page.wait_for_function(
            "el => /\\d/.test(el.textContent)", arg=row.locator(".widget-html").nth(6).element_handle(),
            timeout=DEADLINE_MS)  # a CPU % arrived from the stats sampler

        step = "console"
        # 3. console: a typed command's output.
        console = _cell(page, 4).locator(".ctr-console")
        console_input = console.locator(".ctr-console-input input")
        console_input.click()
        console_input.fill("echo console-says-$((6*7)); echo to-stderr >&2")
        console_input.press("Enter")
        output = console.locator(".ctr-console-output")
        output.locator("text=console-says-42").wait_for(timeout=DEADLINE_MS)
        output.locator(".ctr-stderr", has_text="to-stderr").wait_for(timeout=DEADLINE_MS)
        console.screenshot(path=str(screenshots / f"{shot}view-console.png"))

        step = "stats chart"
        # 4. stats chart: an image with data and alt text.
        chart = _cell(page, 5).locator(".ctr-stats-chart img")
        chart.wait_for(timeout=DEADLINE_MS)
        assert int(chart.get_attribute("data-points") or 0) >= 3
        alt = chart.get_attribute("alt") or ""
        assert "CPU" in alt and box in alt, alt
        _cell(page, 5).locator(".ctr-stats").screenshot(path=str(screenshots / f"{shot}view-stats.png"))

        step = "ctr-made row"
        # 5. a container made with ctr outside the notebook: time until its row is in the DOM.
        outsider = f"ctr-{secrets.token_hex(3)}"
        created = time.monotonic()
        _ctr(browser_env, lab.namespace, "containers", "create", browser_images["busybox"], outsider, "true")
        ctr_returned = time.monotonic()
        dashboard.locator(f".ctr-row-{outsider}").wait_for(timeout=DEADLINE_MS)
        seen = time.monotonic()
        print(f"\nctr containers create -> row in the DOM: {(seen - created) * 1000:.0f} ms "
              f"(ctr itself ran {(ctr_returned - created) * 1000:.0f} ms; after it returned: "
              f"{(seen - ctr_returned) * 1000:.0f} ms)")
        dashboard.screenshot(path=str(screenshots / f"{shot}view-dashboard.png"))

        step = "stop button"
        # 6. Stop from the row: the status changes within the deadline.
        stopped_at = time.monotonic()
        stop_button = row.locator("button", has_text=re.compile("^stop$"))
        stop_button.wait_for(state="visible")
        stop_button.click(force=True)
        row.locator("[data-status='stopped']").wait_for(timeout=DEADLINE_MS)
        print(f"Stop clicked -> status stopped in the DOM: {(time.monotonic() - stopped_at) * 1000:.0f} ms "
              "(stop_timeout 2 s: the busy loop ignores SIGTERM as pid 1)")

        step = "close counts"
        # 7. close(): the last cell reports widget and thread counts before and after.
        _cell(page, last).locator(".jp-InputPrompt").click()
        page.keyboard.press("Shift+Enter")
        _wait_executed(page, last)
        counts = _cell(page, last).locator(".jp-OutputArea-output").first.inner_text()
        match = re.search(r"COUNTS \((\d+), (\d+)\) \((\d+), (\d+)\) \[\]", counts)
        assert match, counts
        widgets_before, threads_before, widgets_after, threads_after = map(int, match.groups())
        print(f"close(): widgets {widgets_before} -> {widgets_after}, threads {threads_before} -> {threads_after}")
        assert widgets_after < widgets_before and threads_after < threads_before
        dashboard.wait_for(state="detached", timeout=DEADLINE_MS)  # closed widgets leave the page
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise AssertionError(f"{lab.front_end.name}: step {step!r} failed (see {screenshots}/{shot}page.png): "
                             f"{first}") from exc
    finally:
        page.screenshot(path=str(screenshots / f"{shot}page.png"), full_page=True)
        page.close()
    print(f"{lab.front_end.name}: the page's whole pass took {time.monotonic() - started:.1f} s")
