"""Conformance: a Python agent over every backend's streaming exec (the transport of ``%%ctr py``)."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from ctr_magic import errors
from ctr_magic.env import EnvironmentInfo, default_base_dir
from ctr_magic.pycell import PythonAgent, RemoteError
from ctr_magic.types import ContainerSpec, CreateContainerRequest

from .conftest import RUN_ID, RUN_LABEL, Backend


@pytest.fixture(scope="session")
def python_image(conformance_env: EnvironmentInfo) -> str:
    from ctr_magic.debian_image import ensure_debian_image

    return ensure_debian_image(conformance_env.registry_addr, cache_root=default_base_dir() / "cache").ref


def test_values_errors_and_interrupt_over_the_exec_stream(be: Backend, python_image: str) -> None:
    assert be.supports("py.cells")
    cid = be.new_id()
    be.service.create_container(CreateContainerRequest(id=cid, image_ref=python_image, labels={RUN_LABEL: RUN_ID},
                                                       spec=ContainerSpec(cmd=["sleep", "3600"])))
    be.service.start_container(cid)
    agent = PythonAgent(be.service, cid)
    try:
        frame = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3, tz="Asia/Tokyo", unit="ns"),
                              "v": [1.5, 2.5, 3.5]})
        out: list[bytes] = []
        got = agent.run("print('rows', len(df))\nback = df.assign(w=df.v * 2)", inputs={"df": frame},
                        outputs=["back"], stdout=out.append)
        pd.testing.assert_frame_equal(got["back"], frame.assign(w=frame.v * 2))
        assert b"".join(out) == b"rows 3\n"
        with pytest.raises(RemoteError, match="ZeroDivisionError: division by zero"):
            agent.run("1 / 0")

        started = threading.Event()

        def interrupt_when_started() -> None:
            started.wait(30)
            import _thread

            _thread.interrupt_main()

        threading.Thread(target=interrupt_when_started, daemon=True).start()
        with pytest.raises(errors.Interrupted, match="KeyboardInterrupt raised in the cell"):
            agent.run("import time\nprint('go', flush=True)\ntime.sleep(120)",
                      stdout=lambda data: started.set() if b"go" in data else None)
        assert agent.run("kept = 40 + 2", outputs=["kept"])["kept"] == 42  # the agent and its state survive
    finally:
        agent.close()
