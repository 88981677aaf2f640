"""Output pumping (real pipes) and the text progress line."""

from __future__ import annotations

import io
import os
import re
import sys
import threading

import pytest

from ctr_magic.notebook.magics.streams import Collector, TextSink, pump
from ctr_magic.notebook.widgets import NullProgress, TextProgress, WidgetProgress, progress_display
from ctr_magic.types import LayerProgress


def test_pump_reads_fds_and_iterators_until_eof() -> None:
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    out_file = os.fdopen(r1, "rb", buffering=0)
    err_file = os.fdopen(r2, "rb", buffering=0)

    def writer() -> None:
        for i in range(50):
            os.write(w1, f"out {i}\n".encode())
            os.write(w2, f"err {i}\n".encode())
        os.close(w1)
        os.close(w2)

    thread = threading.Thread(target=writer)
    thread.start()
    got: dict[str, Collector] = {"stdout": Collector(), "stderr": Collector(), "log": Collector()}
    pump({"stdout": out_file, "stderr": err_file, "log": iter([b"a", b"", b"b"])}, got)
    thread.join()
    assert got["stdout"].value(False) == "".join(f"out {i}\n" for i in range(50))
    assert got["stderr"].value(True) == b"".join(f"err {i}\n".encode() for i in range(50))
    assert got["log"].value(False) == "ab"
    out_file.close()
    err_file.close()


def test_pump_reraises_reader_errors() -> None:
    def broken():
        yield b"x"
        raise OSError("fifo vanished")

    with pytest.raises(OSError, match="fifo vanished"):
        pump({"log": broken()}, {"log": Collector()})


def test_text_sink_decodes_split_utf8(capsys: pytest.CaptureFixture[str]) -> None:
    sink = TextSink("stdout")
    data = "héllo ✓\n".encode()
    for i in range(len(data)):
        sink(data[i : i + 1])
    sink.close()
    assert capsys.readouterr().out == "héllo ✓\n"


def test_text_progress_one_line() -> None:
    out = io.StringIO()
    progress = TextProgress("pull x", stream=out)
    progress(LayerProgress("x", "sha256:a", "layer", 0, 2000, "downloading"))
    progress(LayerProgress("x", "sha256:b", "layer", 0, 1000, "exists"))
    progress(LayerProgress("x", "sha256:a", "layer", 2000, 2000, "done"))
    progress.finish()
    final = out.getvalue().split("\r")[-1]
    assert final == "pull x: 2/2 blobs, 3.0 kB of 3.0 kB\n"


def test_progress_modes() -> None:
    assert isinstance(progress_display("none", "t"), NullProgress)
    assert isinstance(progress_display("auto", "t", shell=None), TextProgress)
    assert isinstance(progress_display("text", "t"), TextProgress)
    assert sys.stderr is not None


def test_text_progress_without_a_terminal_writes_only_the_final_line() -> None:
    out = io.StringIO()
    progress = TextProgress("push y", stream=out, live=False)
    progress(LayerProgress("y", "sha256:a", "layer", 0, 10, "uploading"))
    progress(LayerProgress("y", "sha256:a", "layer", 10, 10, "done"))
    progress.finish()
    assert out.getvalue() == "\rpush y: 1/1 blobs, 10 B of 10 B\n"


def test_widget_progress_bars_per_layer(capsys: pytest.CaptureFixture[str]) -> None:
    progress = WidgetProgress("pull z")  # outside a kernel it displays its plain-text fallback
    assert "pull z" in capsys.readouterr().out
    layer = "application/vnd.oci.image.layer.v1.tar+gzip"
    progress(LayerProgress("z", "sha256:" + "a" * 64, layer, 10, 100, "downloading"))
    progress(LayerProgress("z", "sha256:" + "b" * 64, layer, 0, 50, "exists"))
    progress(LayerProgress("z", "sha256:" + "a" * 64, layer, 100, 100, "unpacked"))
    progress.finish()
    rows = {bar.description: (bar.value, bar.max, bar.bar_style, label.value) for bar, label in progress._rows.values()}
    assert rows == {"a" * 12: (100, 100, "success", "unpacked 100 B"), "b" * 12: (50, 50, "success", "exists 50 B")}
    # Finished: one summary line (what, size, time, speed); the bars stay behind a "details" toggle.
    assert 'class="ctr-progress-summary"' in progress._header.value
    assert progress.summary.startswith("pull z 150 B in ") and "/s)" in progress.summary
    assert progress._bars.layout.display == "none"
    bundle = progress._display._repr_mimebundle_()
    assert bundle["text/plain"] == "pull z" and "application/vnd.jupyter.widget-view+json" in bundle


def test_widget_progress_shows_speed_and_time_left_then_the_digest() -> None:
    progress = WidgetProgress("pull s")
    layer = "application/vnd.oci.image.layer.v1.tar+gzip"
    digest = "sha256:" + "c" * 64
    progress(LayerProgress("s", digest, layer, 0, 4000, "downloading"))
    progress.tracker.blobs[digest].started -= 2.0  # as if the first byte came two seconds ago
    progress._last.clear()
    progress(LayerProgress("s", digest, layer, 1000, 4000, "downloading"))
    (_bar, label), = progress._rows.values()
    match = re.fullmatch(r"downloading 1\.0 kB / 4\.0 kB · (\d+) B/s · (\d+\.\d)s left", label.value)
    assert match and 400 <= int(match[1]) <= 500 and 5.5 <= float(match[2]) <= 7.5, label.value
    progress(LayerProgress("s", digest, layer, 4000, 4000, "done"))
    progress.describe(ref="example.test/s:1", digest="sha256:" + "d" * 64, size=4000)
    progress.finish()
    assert progress.summary.startswith("example.test/s:1 sha256:dddddddddddd 4.0 kB in "), progress.summary


def test_widget_progress_failure_marks_the_unfinished_blob_red() -> None:
    progress = WidgetProgress("pull f")
    layer = "application/vnd.oci.image.layer.v1.tar+gzip"
    progress(LayerProgress("f", "sha256:" + "a" * 64, layer, 10, 10, "done"))
    progress(LayerProgress("f", "sha256:" + "b" * 64, layer, 3, 10, "downloading"))
    progress.finish(ok=False)
    styles = {bar.description: (bar.bar_style, label.value) for bar, label in progress._rows.values()}
    assert styles == {"a" * 12: ("success", "done 10 B"), "b" * 12: ("danger", "failed")}
    assert progress._header.value == "<b>pull f</b>: failed" and progress.summary == ""
