"""The containerd backend: :class:`~.service.DefaultService` over containerd's gRPC API.

``DefaultService`` is a thin front that delegates every method to a part made in its
``__init__``; the parts share one :class:`~.client.ContainerdClient`, one image store and one
snapshot store:

- ``images``: pull (``pull``, ``unpack``, ``ingest``), push, import/export, tag and delete;
- ``containers``: create (with ``spec``, the OCI spec builder, and ``rootfs``), get, list, delete;
- ``tasks``: start, stop, kill, wait, delete, list and logs; ``exec`` with ``fifo`` for the I/O;
- ``snapshots``: the contract's snapshot methods and checkpoints, on ``snapshotstore``, the one
  place the Snapshots service is called; ``commit`` and ``mounts`` build on them;
- ``network``: CNI attachments (on :mod:`ctr_magic.cni`);
- ``runtime_base``: what the runtime parts share (container records and their specs, task
  primitives, per-container files).

Nothing is imported here: ``ctr_magic.connect()`` and the notebook load these modules on first use.
"""
