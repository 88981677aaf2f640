"""The Swarm backend: ``SwarmService`` over a Swarm manager's Engine API plus each node's engine.

Parts: ``api`` (the Swarm endpoints), ``specs`` (service requests -> ServiceSpec), ``tasks`` and
``nodes`` (what the manager reports), ``rollout`` (waiting for tasks, rolling updates),
``service`` (the thin SwarmService), ``cluster`` with ``hostnet``/``hostops`` (the local test
cluster of ``ctr-magic up --swarm N``).
"""
