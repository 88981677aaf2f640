"""%%ctr py on containerd and Docker: values in and out, kept state, and every way a cell can go wrong.

See pycell_support for the image (Debian + pandas 1.5 / numpy 1.24: other versions than the kernel's).
"""

from __future__ import annotations

import _thread
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pycell_support import BACKENDS, Backend, Tee, failure_line, magic_shell, make_backend, ok, python_image, run_cell
from tasks_support import wait_for

from ctr_magic import errors
from ctr_magic.pycell import CannotCross, NoPython, PythonAgent, RemoteError
from ctr_magic.types import ContainerSpec, CreateContainerRequest


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, environment: Any, namespace: str) -> Iterator[Backend]:
    yield from make_backend(request.param, environment, namespace)


@pytest.fixture(scope="module")
def image(registry: str) -> str:
    return python_image(registry)


@pytest.fixture(scope="module")
def box(backend: Backend, image: str) -> str:
    """A running container of the Python image (removed with the backend)."""
    name = f"pybox-{backend.name}"
    backend.service.pull_image(image)
    backend.service.create_container(CreateContainerRequest(id=name, image_ref=image,
                                                            spec=ContainerSpec(cmd=["sleep", "infinity"])))
    backend.service.start_container(name)
    return name


@pytest.fixture(scope="module")
def agent(backend: Backend, box: str) -> Iterator[PythonAgent]:
    started = PythonAgent(backend.service, box)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def shell(backend: Backend, environment: Any, monkeypatch: pytest.MonkeyPatch, image: str) -> Iterator[Any]:
    with magic_shell(backend, environment.base_dir, monkeypatch) as ip:
        ip.user_ns["IMAGE"] = image
        yield ip


def round_trip(agent: PythonAgent, value: Any, fmt: str = "pickle") -> Any:
    return agent.run("back = value", inputs={"value": value}, outputs=["back"], fmt=fmt)["back"]


# ------------------------------------------------------------------------------------------ values


def test_agent_reports_the_container_python(agent: PythonAgent) -> None:
    assert agent.info.version_info[:2] >= (3, 7)
    assert agent.info.libraries["pandas"] and agent.info.libraries["numpy"]
    assert agent.protocol == min(agent.info.pickle_protocol, 5)


@pytest.mark.parametrize("fmt", ["pickle", "arrow", "json"])
def test_plain_values_round_trip(agent: PythonAgent, fmt: str) -> None:
    values: list[Any] = [0, -(2**70), 3.5, "text ✓", None, True, [1, [2, {"k": "v"}]], {"a": {"b": [1.5]}}]
    if fmt != "json":
        values += [b"\x00\xffbytes", bytearray(b"ba")]
    if fmt == "pickle":
        values += [(1, "two", (3,)), {1: {2, 3}}, frozenset({"x"}), complex(1, 2)]
    for value in values:
        back = round_trip(agent, value, fmt)
        assert back == value and type(back) is type(value), (value, back)


@pytest.mark.parametrize("fmt", ["pickle", "arrow"])
def test_numpy_arrays_round_trip(agent: PythonAgent, fmt: str) -> None:
    arrays = [np.arange(12, dtype=np.int32).reshape(3, 4), np.linspace(0, 1, 7), np.array([True, False]),
              np.array(["2024-01-01T00:00", "NaT"], dtype="datetime64[ns]"), np.zeros((0, 3))]
    for array in arrays:
        back = round_trip(agent, array, fmt)
        assert back.dtype == array.dtype and back.shape == array.shape
        np.testing.assert_array_equal(back, array)
    scalar = round_trip(agent, np.float32(2.5), fmt)
    assert scalar == np.float32(2.5) and isinstance(scalar, np.float32)


def _typed_frame() -> pd.DataFrame:
    n = 5
    frame = pd.DataFrame({
        "i": np.arange(n, dtype="int64"),
        "f": np.linspace(0.5, 2.5, n),
        "b": [True, False, True, True, False],
        "when": pd.date_range("2024-03-30 22:00", periods=n, freq="h", tz="Europe/Berlin", unit="ns"),
        "naive": pd.date_range("2024-01-01", periods=n, freq="D", unit="ns"),
        "cat": pd.Categorical(["a", "b", "a", "c", "b"], categories=pd.Index(["c", "b", "a"], dtype=object),
                              ordered=True),
        "nullable": pd.array([1, None, 3, 4, None], dtype="Int64"),
        "obj": np.array(["x", None, "z", "w", "v"], dtype=object),
    }, index=pd.Index([10, 20, 30, 40, 50], name="row"))  # fmt: skip
    frame["obj"] = frame["obj"].astype(object)  # pandas 3 would make it str, which pandas 1.5 does not have
    return frame


@pytest.mark.parametrize("fmt", ["pickle", "arrow"])
def test_dataframes_keep_dtypes_and_time_zones(agent: PythonAgent, fmt: str) -> None:
    frame = _typed_frame()
    out = agent.run("inside = {c: str(t) for c, t in df.dtypes.items()}; back = df", inputs={"df": frame},
                    outputs=["inside", "back"], fmt=fmt)
    assert out["inside"]["when"] == "datetime64[ns, Europe/Berlin]" and out["inside"]["cat"] == "category"
    pd.testing.assert_frame_equal(out["back"], frame)
    series = round_trip(agent, frame["when"].rename("w"), fmt)
    pd.testing.assert_series_equal(series, frame["when"].rename("w"))


def test_strings_come_back_as_strings(agent: PythonAgent) -> None:
    frame = pd.DataFrame({"s": ["a", "b", None]})  # pandas 3's str dtype; the container's pandas has object
    back = round_trip(agent, frame)
    assert list(back["s"].iloc[:2]) == ["a", "b"] and pd.isna(back["s"].iloc[2])


def test_a_pyarrow_that_cannot_import_there_is_not_used(backend: Backend, image: str) -> None:
    """The kernel's pyarrow mounted into the container, where it refuses Debian's numpy 1.24."""
    import glob
    import os

    import pyarrow

    from ctr_magic.types import DeleteContainerOptions, MountSpec

    site = os.path.dirname(os.path.dirname(pyarrow.__file__))
    mounts = [MountSpec(destination=f"/usr/local/lib/python3.11/dist-packages/{os.path.basename(path)}",
                        source=path, options=["rbind", "ro"]) for path in glob.glob(f"{site}/pyarrow*")]
    name = f"pyarrow-{backend.name}"
    backend.service.create_container(CreateContainerRequest(id=name, image_ref=image, spec=ContainerSpec(
        cmd=["sleep", "infinity"], mounts=mounts)))
    try:
        backend.service.start_container(name)
        agent = PythonAgent(backend.service, name)
        try:
            found = agent.run("import importlib.util; found = importlib.util.find_spec('pyarrow') is not None",
                              outputs=["found"])["found"]
            assert found and agent.info.libraries["pyarrow"] == ""  # installed, but not usable: not offered
            frame = _typed_frame()
            pd.testing.assert_frame_equal(round_trip(agent, frame), frame)
        finally:
            agent.close()
    finally:
        backend.service.delete_container(name, DeleteContainerOptions(force=True))


def test_a_100_mb_dataframe_in_and_out(agent: PythonAgent) -> None:
    rows = 100 * 2**20 // 8 // 4
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({f"c{i}": rng.random(rows) for i in range(4)})
    assert frame.memory_usage(index=False).sum() >= 100 * 2**20
    started = time.monotonic()
    out = agent.run("total = float(big.to_numpy().sum()); big2 = big * 2", inputs={"big": frame},
                    outputs=["total", "big2"])
    seconds = time.monotonic() - started
    assert out["total"] == pytest.approx(float(frame.to_numpy().sum()))
    pd.testing.assert_frame_equal(out["big2"], frame * 2)
    print(f"100 MiB DataFrame in and 100 MiB out in {seconds:.2f}s")


# ------------------------------------------------------------------------------------------ magics


def test_kept_container_keeps_state_and_line_form(shell: Any, backend: Backend) -> None:
    name = f"kept-{backend.name}"
    shell.user_ns.update(x=5, frame=pd.DataFrame({"a": [1, 2, 3]}))
    out, _ = ok(shell, f"%%ctr py --keep {name} $IMAGE --in frame,x --out total\n"
                       "counter = 1\ntotal = int(frame.a.sum()) * x\nprint('inside', counter)")
    assert f"started {name}" in out and "inside 1\n" in out
    assert shell.user_ns["total"] == 30
    ok(shell, f"%%ctr py {name} --out counter\ncounter += 1")
    assert shell.user_ns["counter"] == 2
    ok(shell, f"y = %ctr py {name} -- counter * 10 + len([x for x in 'abc'])")
    assert shell.user_ns["y"] == 23
    ok(shell, f"%ctr rm -f {name}")


def test_output_streams_live_stderr_apart(shell: Any, box: str) -> None:
    seen: list[float] = []

    def on_write(text: str) -> None:
        if "first" in text and not seen:
            seen.append(time.monotonic())

    started = time.monotonic()
    result, out, err = run_cell(shell, f"%%ctr py {box}\nimport sys, time\nprint('first')\ntime.sleep(1.5)\n"
                                       "print('oops', file=sys.stderr)\nprint('last')",
                                stdout=Tee(on_write))  # fmt: skip
    assert result.success and out == "first\nlast\n" and err == "oops\n"
    assert seen and seen[0] - started < time.monotonic() - started - 1.0  # 'first' came before the sleep ended


def test_image_target_leaves_no_container(shell: Any, backend: Backend) -> None:
    before = {c.id for c in backend.service.list_containers()}
    ok(shell, "v = %ctr py $IMAGE -- __import__('sys').version_info[0]")
    assert shell.user_ns["v"] == 3
    assert {c.id for c in backend.service.list_containers()} == before


# ------------------------------------------------------------------------------------------ bad input


def test_unknown_variable_changes_nothing(shell: Any, backend: Backend) -> None:
    before = {c.id for c in backend.service.list_containers()}
    result, out, _ = run_cell(shell, "%%ctr py $IMAGE --in nope\npass")
    assert "--in nope: no Python variable named 'nope'" in failure_line(result, out, errors.InvalidArgument)
    assert {c.id for c in backend.service.list_containers()} == before


def test_values_that_cannot_cross_name_the_variable(shell: Any, box: str, tmp_path: Any) -> None:
    shell.user_ns["handle"] = open(tmp_path / "f.txt", "w")  # noqa: SIM115  (a value that cannot cross)
    shell.user_ns["fn"] = lambda: 1
    result, out, _ = run_cell(shell, f"%ctr py {box} --in handle -- 1")
    assert "--in handle: an open file cannot be pickled" in failure_line(result, out, CannotCross)
    result, out, _ = run_cell(shell, f"%ctr py {box} --in fn -- 1")
    assert "--in fn: a lambda" in failure_line(result, out, CannotCross)
    result, out, _ = run_cell(shell, f"%ctr py {box} --format arrow -- open('/etc/hostname')")
    assert "the result" not in out and "cannot come back" in failure_line(result, out, CannotCross)
    result, out, _ = run_cell(shell, f"%%ctr py {box} --out never\npass")
    assert "--out never" in failure_line(result, out, errors.NotFound)
    shell.user_ns["handle"].close()


def test_syntax_error_and_remote_exception(shell: Any, box: str) -> None:
    result, out, _ = run_cell(shell, f"%%ctr py {box}\nx = 1\ny = (")
    line = failure_line(result, out, RemoteError)
    assert "SyntaxError" in line and "(line 2)" in line
    result, out, err = run_cell(shell, f"%%ctr py {box}\ndef inner():\n    return {{}}['missing']\ninner()")
    assert "%ctr py: KeyError: 'missing'" in failure_line(result, out, RemoteError)
    assert "Traceback" not in err
    result, out, err = run_cell(shell, f"%%ctr py --debug {box}\ndef inner():\n    return {{}}['missing']\ninner()")
    assert not result.success
    assert "remote traceback" in err and "in inner" in err and "return {}['missing']" in err


def test_image_without_python(shell: Any, backend: Backend, test_images: dict[str, str]) -> None:
    before = {c.id for c in backend.service.list_containers()}
    result, out, _ = run_cell(shell, f"%ctr py {test_images['busybox']} -- 1")
    assert "has no python3" in failure_line(result, out, NoPython)
    assert {c.id for c in backend.service.list_containers()} == before
    name = f"nopy-{backend.name}"
    ok(shell, f"%ctr run -d --name {name} {test_images['busybox']} -- sleep 600")
    result, out, _ = run_cell(shell, f"%ctr py {name} -- 1")
    assert f"container {name} has no python3" in failure_line(result, out, NoPython)


def test_interrupt_raises_inside_and_leaves_no_process(shell: Any, backend: Backend, box: str) -> None:
    ok(shell, f"%%ctr py {box} --fresh\nsurvivor = 'still here'")

    def on_write(text: str) -> None:
        if "started" in text:
            _thread.interrupt_main()

    cell = (f"%%ctr py {box}\nimport subprocess\nchild = subprocess.Popen(['sleep', '300'])\n"
            "print('started', flush=True)\nchild.wait()")  # fmt: skip
    result, out, _ = run_cell(shell, cell, stdout=Tee(on_write))
    line = failure_line(result, out.replace("started\n", ""), errors.Interrupted)
    assert "KeyboardInterrupt raised in the cell" in line
    wait_for(lambda: backend.process_names(box).count("sleep") == 1, timeout=15)  # only the init is left
    assert set(backend.process_names(box)) == {"sleep", "python3"}  # the init and agents, nothing the cell started
    ok(shell, f"kept = %ctr py {box} -- survivor")
    assert shell.user_ns["kept"] == "still here"


def test_a_cell_that_ignores_the_interrupt_loses_its_agent(shell: Any, backend: Backend, box: str) -> None:
    from ctr_magic.notebook.magics import CtrMagic

    magic = next(c for c in shell.configurables if isinstance(c, CtrMagic))
    ok(shell, f"%%ctr py {box} --fresh\nbefore = 1")
    agent, _ = magic.session.agents().get(magic.session.service, box)
    agent.interrupt_grace = 4.0

    def on_write(text: str) -> None:
        if "deaf" in text:
            _thread.interrupt_main()

    cell = (f"%%ctr py {box}\nimport signal, subprocess, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "child = subprocess.Popen(['sleep', '300'])\nprint('deaf', flush=True)\ntime.sleep(300)")  # fmt: skip
    result, out, _ = run_cell(shell, cell, stdout=Tee(on_write))
    line = failure_line(result, out.replace("deaf\n", ""), errors.Interrupted)
    assert "did not stop; its Python agent was killed" in line
    wait_for(lambda: set(backend.process_names(box)) <= {"sleep", "python3"}
             and backend.process_names(box).count("sleep") == 1, timeout=15)  # fmt: skip
    result, out, err = run_cell(shell, f"%ctr py {box} -- 'before' in globals()")
    assert result.success and "had ended; this one starts empty" in err
    assert shell.user_ns["_"] is False


def test_in_a_real_kernel_output_lands_on_its_streams(backend: Backend, box: str) -> None:
    """What the notebook shows: IOPub stream messages (stderr apart, red in Jupyter) and one error line."""
    import re

    import nbclient
    from nbformat.v4 import new_code_cell, new_notebook

    settings = (f"%config CtrMagic.backend = {backend.name!r}\n%config CtrMagic.socket = {backend.socket!r}\n"
                f"%config CtrMagic.namespace = {backend.namespace!r}\n%config CtrMagic.progress = 'none'")
    nb = new_notebook(cells=[
        new_code_cell("%load_ext ctr_magic\n" + settings),
        new_code_cell(f"%%ctr py {box}\nimport sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)"),
        new_code_cell(f"%%ctr py {box}\nraise ValueError('bad value')", metadata={"tags": ["raises-exception"]}),
    ])  # fmt: skip
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", record_timing=False).execute()
    streams = {(o.name, o.text) for o in nb.cells[1].outputs if o.output_type == "stream"}
    assert streams == {("stdout", "to stdout\n"), ("stderr", "to stderr\n")}
    [error] = nb.cells[2].outputs
    assert error.output_type == "error" and error.ename == "RemoteError" and len(error.traceback) == 1
    assert re.sub(r"\x1b\[[0-9;]*m", "", error.traceback[0]) == "RemoteError: %ctr py: ValueError: bad value"
