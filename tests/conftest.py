"""Suite-wide set-up: a temporary directory of this run's own.

FIFO directories, mount points and scratch files that ctr-magic makes go under ``tempfile``'s
directory; giving each run its own keeps the leak checks (no FIFO dir left, ...) about this run
only, even when another run shares the machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Optional

import pytest

if TYPE_CHECKING:
    from ctr_magic.env import Environment

_saved: dict[str, object] = {}


def _shared_environment() -> Optional[Environment]:
    """The environment notebooks use (``$CTR_MAGIC_HOME``); None where it cannot even be described."""
    try:
        from ctr_magic.env import Environment

        return Environment()
    except Exception:
        return None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Short on purpose: daemons started by tests bind unix sockets below here (108-byte limit).
    run_tmp = tempfile.mkdtemp(prefix="cm-")
    if not config.option.basetemp:
        config.option.basetemp = os.path.join(run_tmp, "p")
    _saved.update(dir=run_tmp, env=os.environ.get("TMPDIR"), tempdir=tempfile.tempdir)
    os.environ["TMPDIR"] = run_tmp
    tempfile.tempdir = run_tmp
    env = _shared_environment()
    _saved["shared_env_was_running"] = env is None or env.status() is not None


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _saved:
        return
    # A notebook that failed before its `%ctr down` cell leaves the environment it started running.
    env = _shared_environment()
    if not _saved["shared_env_was_running"] and env is not None and env.status() is not None:
        print("\nstopping the private environment a failed notebook left running")
        env.down()
    tempfile.tempdir = _saved["tempdir"]  # type: ignore[assignment]
    if _saved["env"] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = str(_saved["env"])
    run_tmp = str(_saved["dir"])
    with open("/proc/self/mountinfo") as mountinfo:
        leaked = [line.split()[4] for line in mountinfo if line.split()[4].startswith(run_tmp + "/")]
    if leaked:  # never delete through a mount a test left behind: report it instead
        print(f"\nctr-magic tests left {len(leaked)} mounts under {run_tmp}, e.g. {leaked[0]}")
        return
    shutil.rmtree(run_tmp, ignore_errors=True)
