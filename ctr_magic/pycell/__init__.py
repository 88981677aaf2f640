"""Python cells in containers: an agent run by the container's own ``python3`` over an exec stream.

- :mod:`.wire`: frames and value codecs, :mod:`.columns`: DataFrames as npy columns (both also sent into
  the container as source),
- :mod:`.agent`: the agent's main loop (runs in the container, never imported by the kernel),
- :mod:`.bootstrap`: the short ``python3 -c`` that loads the agent from stdin,
- :mod:`.client`: :class:`PythonAgent`, the kernel's side,
- :mod:`.pool`: the agents of one notebook session.

Independent of the magics: ``PythonAgent(service, "box").run("y = x + 1", inputs={"x": 1}, outputs=["y"])``.
"""

from .client import AgentGone, CannotCross, NoPython, PythonAgent, RemoteError
from .pool import AgentPool

__all__ = ["AgentGone", "AgentPool", "CannotCross", "NoPython", "PythonAgent", "RemoteError"]
