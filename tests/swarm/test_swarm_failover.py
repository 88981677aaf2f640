"""A worker's dockerd is killed: the manager reschedules its tasks and ps shows it (runs last: it
takes node3 out of the session's cluster)."""

from __future__ import annotations

from swarm_support import wait_for

from ctr_magic.swarm.cluster import SwarmCluster
from ctr_magic.swarm.service import SwarmService
from ctr_magic.swarm.specs import ServiceRequest


def test_killing_a_worker_reschedules_its_tasks(swarm_cluster: SwarmCluster, swarm: SwarmService,
                                                swarm_images: dict[str, str], service_name: str) -> None:
    swarm.create_service(ServiceRequest(name=service_name, image=swarm_images["busybox"], replicas=6,
                                        cmd=["sleep", "3600"], stop_grace=1.0))
    on_node3 = {t.slot for t in swarm.service_tasks(service_name, all=False) if t.node == "node3"}
    assert on_node3
    swarm_cluster.kill_node("node3")
    wait_for(lambda: swarm.cluster.node("node3").state == "down", 120, what="the manager to mark node3 down")

    def rescheduled() -> bool:
        live = [t for t in swarm.service_tasks(service_name) if t.live]
        return len(live) == 6 and all(t.node in ("node1", "node2") for t in live)

    wait_for(rescheduled, 180, what="node3's tasks to run elsewhere")
    tasks = swarm.service_tasks(service_name)
    for slot in on_node3:
        history = [t for t in tasks if t.slot == slot]
        assert any(t.node == "node3" and t.desired_state == "shutdown" for t in history), history
        assert any(t.node in ("node1", "node2") and t.live for t in history), history
