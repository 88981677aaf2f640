"""Pull progress: the Engine API's pull lines as the contract's LayerProgress events."""

from __future__ import annotations

from typing import Any

from ..types import LayerProgress


class PullProgress:
    """Engine API pull lines -> LayerProgress events (per layer on Docker, one combined bar on socktainer)."""

    _STATES = {
        "pulling fs layer": "waiting",
        "waiting": "waiting",
        "downloading": "downloading",
        "verifying checksum": "downloading",
        "download complete": "done",
        "extracting": "unpacking",
        "pull complete": "unpacked",
        "already exists": "exists",
    }

    def __init__(self, ref: str, callback: Any) -> None:
        self.ref = ref
        self.callback = callback
        self.totals: dict[str, int] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        if self.callback is None:
            return
        status = str(event.get("status", ""))
        detail = event.get("progressDetail") or {}
        layer = str(event.get("id", ""))
        state = self._STATES.get(status.lower())
        if state is None:
            if not detail or status.lower().startswith("pulling from"):
                return  # informational ("Pulling from ...", "Digest: ...", "Status: ...")
            state = "downloading"
        total = int(detail.get("total") or self.totals.get(layer, 0) or 0)
        if total:
            self.totals[layer] = total
        done = int(detail.get("current") or 0)
        if state in ("done", "unpacked", "exists"):
            done = total
        self.callback(LayerProgress(ref=self.ref, digest=layer, done=done, total=total, state=state))


__all__ = ["PullProgress"]
