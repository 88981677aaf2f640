"""The old import path of the embedded environment; it now lives in :mod:`ctr_magic.env`."""

from __future__ import annotations

from .env import *  # noqa: F403
from .env import __all__  # noqa: F401
