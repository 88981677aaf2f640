"""The Docker backend: :class:`~.service.DockerService`, the Service contract on the Docker Engine API
(Docker, Podman, socktainer; also the engine under ``AppleService``), over ``api`` (the Engine API client
on ``transport``), with request bodies in ``requests``, names in ``names``, exec streams in ``exec``.

Mapping decisions (the capability table in ``ctr_magic.capabilities`` lists what differs):

* A contract container id is Docker's container *name*. Docker's own lookup falls back to id
  prefixes, so a name made only of hex digits is resolved with inspect first and the call acts on
  the full id: a name never silently matches another container's id prefix.
* ``ContainerSpec.cmd`` replaces the image's whole command line, as on containerd and in the
  reference's Apple backend: its first element becomes the Entrypoint, the rest the Cmd.
* A container's "task" is its state: there is no task object to delete, so ``delete_task`` only
  kills (with ``force``) or refuses while running; ``get_task_info`` of a created container says
  ``created``.
* ``stop_container`` keeps the contract: the signal, then up to ``timeout`` seconds for the exit,
  then SIGKILL with ``force`` or ``TaskStopTimeout`` without.
* Networking belongs to Docker (network mode at create): ``setup_network``/``remove_network`` only
  check the container exists. Snapshots are not exposed by the Engine API: ``NotSupported``.
"""
