"""containers methods of DefaultService (being written)."""

from __future__ import annotations

from ._base import ServiceBase


class ContainersMixin(ServiceBase):
    pass
