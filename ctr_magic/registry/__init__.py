"""An OCI distribution (registry) client: resolve, fetch and push images over HTTP(S)."""

from __future__ import annotations

from .auth import Challenge, RegistryAuth, parse_www_authenticate, scope_for_request
from .client import ClientCache, DigestMismatch, RegistryClient
from .manifests import MANIFEST_ACCEPT, Descriptor, Index, Manifest, parse, select_manifest
from .options import Credentials, RegistryOptions, is_local_host
from .retry import RetryPolicy

__all__ = [
    "MANIFEST_ACCEPT",
    "Challenge",
    "ClientCache",
    "Credentials",
    "Descriptor",
    "DigestMismatch",
    "Index",
    "Manifest",
    "RegistryAuth",
    "RegistryClient",
    "RegistryOptions",
    "RetryPolicy",
    "is_local_host",
    "parse",
    "parse_www_authenticate",
    "scope_for_request",
    "select_manifest",
]
