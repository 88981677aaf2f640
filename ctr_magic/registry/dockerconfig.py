"""Credentials from Docker's config file (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``).

Supports ``auths`` entries (``auth`` = base64 ``user:password``, or ``username``/``password``,
or ``identitytoken``) and credential helpers (``credHelpers`` per host, ``credsStore`` for all).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

from ..constants import DEFAULT_REGISTRY, LEGACY_DEFAULT_REGISTRY, REGISTRY_V2_HOST
from .options import Credentials

log = logging.getLogger(__name__)

_DOCKER_HUB_ALIASES = frozenset({DEFAULT_REGISTRY, LEGACY_DEFAULT_REGISTRY, REGISTRY_V2_HOST})
_DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HELPER_TIMEOUT = 20.0


def config_path(explicit: Optional[str] = None) -> Path:
    if explicit:
        return Path(explicit)
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _host_of_key(key: str) -> str:
    """``https://host:5000/v1/`` -> ``host:5000``; ``host:5000`` stays."""
    text = key.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    return text.split("/", 1)[0].lower()


def _same_registry(key: str, host: str) -> bool:
    key_host, host = _host_of_key(key), host.lower()
    if key_host == host:
        return True
    return key_host in _DOCKER_HUB_ALIASES and host in _DOCKER_HUB_ALIASES


def _from_auth_entry(entry: dict[str, Any], source: str) -> Optional[Credentials]:
    username = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    token = str(entry.get("identitytoken") or "")
    encoded = entry.get("auth")
    if encoded:
        try:
            decoded = base64.b64decode(str(encoded), validate=False).decode()
        except (binascii.Error, UnicodeDecodeError):
            log.warning("ignoring an unreadable 'auth' entry in %s", source)
            return None
        username, sep, password = decoded.partition(":")
        if not sep:
            log.warning("ignoring an 'auth' entry without ':' in %s", source)
            return None
    if not (password or token):
        return None
    return Credentials(username=username, password=password, identity_token=token, source=source)


def _from_helper(helper: str, host: str, source: str) -> Optional[Credentials]:
    binary = shutil.which(f"docker-credential-{helper}")
    if not binary:
        log.warning("credential helper docker-credential-%s named in %s is not installed", helper, source)
        return None
    server = _DOCKER_HUB_KEY if host.lower() in _DOCKER_HUB_ALIASES else host
    try:
        proc = subprocess.run([binary, "get"], input=server.encode(), capture_output=True, timeout=_HELPER_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("credential helper docker-credential-%s failed: %s", helper, type(exc).__name__)
        return None
    if proc.returncode != 0:
        # Helpers answer "credentials not found" with a non-zero exit: that is not an error.
        log.debug("docker-credential-%s has no credentials for %s", helper, host)
        return None
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        log.warning("credential helper docker-credential-%s printed something that is not JSON", helper)
        return None
    username, secret = str(doc.get("Username") or ""), str(doc.get("Secret") or "")
    if not secret:
        return None
    where = f"docker-credential-{helper}"
    if username == "<token>":
        return Credentials(identity_token=secret, source=where)
    return Credentials(username=username, password=secret, source=where)


def load_credentials(host: str, path: Optional[str] = None) -> Optional[Credentials]:
    """Credentials for registry *host* from the Docker config file, or None."""
    file = config_path(path)
    try:
        doc = json.loads(file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("cannot read Docker config %s (%s); continuing without its credentials", file, type(exc).__name__)
        return None
    if not isinstance(doc, dict):
        return None
    source = str(file)
    helpers = doc.get("credHelpers") or {}
    for key, helper in helpers.items():
        if _same_registry(key, host):
            return _from_helper(str(helper), host, source)
    for key, entry in (doc.get("auths") or {}).items():
        if _same_registry(key, host) and isinstance(entry, dict):
            found = _from_auth_entry(entry, source)
            if found:
                return found
    store = doc.get("credsStore")
    if store:
        return _from_helper(str(store), host, source)
    return None
