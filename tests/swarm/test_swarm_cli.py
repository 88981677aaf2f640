"""``ctr-magic up --swarm 1`` / ``down``: a cluster of its own, and nothing of it left afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from swarm_support import leftovers

from ctr_magic.swarm.cluster import ClusterInfo


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ctr_magic.cli", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_up_swarm_and_down_leave_nothing(swarm_info: ClusterInfo, tmp_path: Path) -> None:
    # (swarm_info: the session's cluster runs meanwhile; this one must pick another subnet)
    up = _cli(tmp_path, "up", "--swarm", "1", "--json")
    try:
        assert up.returncode == 0, up.stderr
        info = ClusterInfo.from_dict(json.loads(up.stdout))
        assert [n.role for n in info.nodes] == ["manager"] and info.subnet != swarm_info.subnet
        assert info.subnet.startswith("10.214.") and info.gateway == info.registry_addr.rpartition(":")[0]
        assert Path(f"/run/netns/{info.nodes[0].netns}").exists()
        again = _cli(tmp_path, "up", "--swarm", "1", "--json")  # harmless when running
        assert again.returncode == 0 and json.loads(again.stdout)["nodes"][0]["pid"] == info.nodes[0].pid
    finally:
        down = _cli(tmp_path, "down")
    assert down.returncode == 0, down.stderr
    assert leftovers(info) == []
    assert not (tmp_path / "swarm" / "swarm.json").exists()


def test_magic_up_swarm_uses_it_and_down_removes_it(shell: object, tmp_path: Path) -> None:
    from swarm_support import run_cell

    result, out, err = run_cell(shell, f"info = %ctr up --swarm 1 --home {tmp_path}")
    info = None
    try:
        assert result.success, out + err
        info = shell.user_ns["info"]  # type: ignore[attr-defined]
        assert "swarm of 1 nodes (manager node1" in out
        result, out, err = run_cell(shell, "nodes = %ctr nodes")
        assert result.success, out + err
        assert list(shell.user_ns["nodes"]["name"]) == ["node1"]  # type: ignore[attr-defined]
    finally:
        result, out, err = run_cell(shell, "%ctr down")
    assert result.success and "stopped the swarm" in out, out + err
    assert info is not None and leftovers(info) == []
