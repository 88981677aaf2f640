"""Suite-wide set-up: a temporary directory of this run's own.

FIFO directories, mount points and scratch files that ctr-magic makes go under ``tempfile``'s
directory; giving each run its own keeps the leak checks (no FIFO dir left, ...) about this run
only, even when another run shares the machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_saved: dict[str, object] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Short on purpose: daemons started by tests bind unix sockets below here (108-byte limit).
    run_tmp = tempfile.mkdtemp(prefix="cm-")
    if not config.option.basetemp:
        config.option.basetemp = os.path.join(run_tmp, "p")
    _saved.update(dir=run_tmp, env=os.environ.get("TMPDIR"), tempdir=tempfile.tempdir)
    os.environ["TMPDIR"] = run_tmp
    tempfile.tempdir = run_tmp


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _saved:
        return
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
