"""What every DefaultService part shares: the client and the stores built on it."""

from __future__ import annotations

import logging

from .client import ContainerdClient
from .content import ContentStore
from .imagestore import ImageStore

log = logging.getLogger(__name__)


class ServiceBase:
    """Holds the connection; the area mixins (images, containers, tasks...) build on it."""

    def __init__(self, client: ContainerdClient, *, snapshotter: str = "", data_dir: str = "") -> None:
        from ..constants import DEFAULT_SNAPSHOTTER

        self.client = client
        self.snapshotter = snapshotter or DEFAULT_SNAPSHOTTER
        self.data_dir = data_dir
        self.images = ImageStore(client)
        self.content: ContentStore = self.images.content

    @property
    def namespace(self) -> str:
        return self.client.namespace
