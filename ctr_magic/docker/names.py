"""Contract container ids as Docker container names.

Docker looks a container up by full id, then exact name, then id prefix: a contract id is a
name, so a lookup must never land on another container whose id starts with it.
"""

from __future__ import annotations

import re
from typing import Any

from .. import errors
from .api import EngineAPI
from .convert import container_name
from .requests import require

# Docker's container name rule.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")
_HEX = re.compile(r"[0-9a-f]+\Z")


def check_name(container_id: str) -> None:
    """InvalidArgument unless *container_id* is a valid Docker container name."""
    if not _NAME.match(container_id):
        raise errors.InvalidArgument(
            f"container id {container_id!r} is not a valid Docker container name",
            hint="use letters, digits, '_', '.', '-' (at least 2 characters, starting with a letter or digit)",
        )


class ContainerNames:
    """Finds containers by contract id (their Docker name) on one Engine API."""

    def __init__(self, api: EngineAPI) -> None:
        self.api = api

    def resolve(self, container_id: str) -> dict[str, Any]:
        """Inspect by name; NotFound unless the name (or full id) really is this container's."""
        require(container_id, "container id")
        data = self.api.container_inspect(container_id)
        if container_name(data) != container_id and data.get("Id") != container_id:
            raise errors.NotFound(f"container {container_id} not found",
                                  hint="list_containers() (or `%ctr ps -a`) shows the containers that exist")
        return data

    def target(self, container_id: str) -> str:
        """What to put in a container URL path for *container_id*, without a round trip when safe.

        Docker looks a path up as full id, then exact name, then id prefix. A name with a character
        that is not a hex digit can only match as that exact name; a hex-only one is resolved first.
        """
        require(container_id, "container id")
        if _HEX.match(container_id):
            return str(self.resolve(container_id)["Id"])
        return container_id


__all__ = ["ContainerNames", "check_name"]
