"""Registries that want credentials: htpasswd basic auth and token auth with an issuer of our own.

Secrets must never show up in an error message, a repr or a log line.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import images_support
import pytest
from images_support import assert_nothing_left, snapshots
from registry_servers import PrivateRegistry, TokenIssuer, skopeo_copy, skopeo_inspect_raw, write_docker_config

from ctr_magic import errors, ocilayout, testimages
from ctr_magic.containerd.service import DefaultService
from ctr_magic.registry import Credentials, RegistryOptions
from ctr_magic.types import DeleteImageOptions

images_namespace = images_support.images_namespace
svc = images_support.svc

USER = "alice"
PASSWORD = "s3cret-Pa55-" + "x7Qz"  # a test secret the tests look for in logs
WRONG = "wrong-Pa55-" + "k9Lm"
REFRESH = "refresh-" + "T0ken-q2w"


def _secrets(*passwords: str) -> list[str]:
    out = []
    for password in passwords:
        out += [password, base64.b64encode(f"{USER}:{password}".encode()).decode()]
    return out


def _assert_no_secret(text: str, *passwords: str) -> None:
    for secret in _secrets(*passwords):
        assert secret not in text


@pytest.fixture(scope="module")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> ocilayout.BuiltImage:
    return testimages.busybox_single_layer(tmp_path_factory.mktemp("auth-image"), tag="busybox")


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory,
                   busybox_layout: ocilayout.BuiltImage) -> Iterator[PrivateRegistry]:
    with PrivateRegistry(tmp_path_factory.mktemp("basic-registry"), htpasswd_users={USER: PASSWORD}) as reg:
        skopeo_copy(busybox_layout.oci_ref, f"docker://{reg.addr}/private/busybox:latest", creds=f"{USER}:{PASSWORD}")
        yield reg


@pytest.fixture(scope="module")
def token_setup(tmp_path_factory: pytest.TempPathFactory,
                busybox_layout: ocilayout.BuiltImage) -> Iterator[tuple[PrivateRegistry, TokenIssuer]]:
    work = tmp_path_factory.mktemp("token-registry")
    issuer = TokenIssuer(work, {USER: PASSWORD}, refresh_tokens={REFRESH: USER})
    with issuer, PrivateRegistry(work / "reg", token_issuer=issuer) as reg:
        skopeo_copy(busybox_layout.oci_ref, f"docker://{reg.addr}/private/busybox:latest", creds=f"{USER}:{PASSWORD}")
        yield reg, issuer


@pytest.fixture
def options(svc: DefaultService) -> Iterator[None]:
    yield
    svc.registry_options = RegistryOptions()


def test_basic_auth_without_credentials(svc: DefaultService, basic_registry: PrivateRegistry, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, options: None) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))
    ref = f"{basic_registry.addr}/private/busybox:latest"
    with pytest.raises(errors.Unauthorized, match=f"registry {basic_registry.addr} requires credentials"):
        svc.pull_image(ref)
    assert_nothing_left(svc, ref)


def test_basic_auth_from_docker_config(svc: DefaultService, basic_registry: PrivateRegistry, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                       options: None) -> None:
    caplog.set_level(logging.DEBUG)
    write_docker_config(tmp_path / "docker", basic_registry.addr, USER, PASSWORD)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    ref = f"{basic_registry.addr}/private/busybox:latest"
    info = svc.pull_image(ref)
    assert svc.images.resolve(ref).top_chain_id in snapshots(svc.client)
    _assert_no_secret(caplog.text + repr(info) + repr(svc.registry_options), PASSWORD)
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))


def test_basic_auth_wrong_password(svc: DefaultService, basic_registry: PrivateRegistry, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture, options: None) -> None:
    caplog.set_level(logging.DEBUG)
    config = write_docker_config(tmp_path / "docker", basic_registry.addr, USER, WRONG)
    svc.registry_options = RegistryOptions(docker_config=str(config))
    ref = f"{basic_registry.addr}/private/busybox:latest"
    with pytest.raises(errors.Unauthorized) as err:
        svc.pull_image(ref)
    message = str(err.value)
    assert f"rejected the credentials of user '{USER}'" in message and str(config) in message
    _assert_no_secret(message + repr(err.value) + caplog.text + repr(svc.registry_options), WRONG, PASSWORD)
    assert_nothing_left(svc, ref)


def test_token_auth(svc: DefaultService, token_setup: tuple[PrivateRegistry, TokenIssuer],
                    caplog: pytest.LogCaptureFixture, options: None) -> None:
    reg, issuer = token_setup
    caplog.set_level(logging.DEBUG)
    creds = Credentials(USER, PASSWORD, source="test")
    svc.registry_options = RegistryOptions(credentials={reg.addr: creds})
    issuer.requests.clear()
    ref = f"{reg.addr}/private/busybox:latest"
    info = svc.pull_image(ref)
    assert svc.images.resolve(ref).top_chain_id in snapshots(svc.client)
    # One token for the repository, reused for the manifest, config and layer requests.
    assert [r["scope"] for r in issuer.requests] == [["repository:private/busybox:pull"]]
    assert {r["user"] for r in issuer.requests} == {USER}
    _assert_no_secret(caplog.text + repr(info) + repr(creds) + repr(svc.registry_options), PASSWORD)
    assert "eyJ" not in caplog.text  # no JWT in the logs either
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))


def test_token_auth_wrong_or_missing_credentials(svc: DefaultService, token_setup: tuple[PrivateRegistry, TokenIssuer],
                                                 caplog: pytest.LogCaptureFixture, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, options: None) -> None:
    reg, _ = token_setup
    caplog.set_level(logging.DEBUG)
    ref = f"{reg.addr}/private/busybox:latest"
    svc.registry_options = RegistryOptions(credentials={reg.addr: Credentials(USER, WRONG, source="test")})
    with pytest.raises(errors.Unauthorized, match=f"rejected the credentials of user '{USER}'") as err:
        svc.pull_image(ref)
    _assert_no_secret(str(err.value) + repr(err.value) + caplog.text, WRONG, PASSWORD)
    assert_nothing_left(svc, ref)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))
    svc.registry_options = RegistryOptions()
    with pytest.raises(errors.Unauthorized, match="requires credentials to access repository 'private/busybox'"):
        svc.pull_image(ref)
    assert_nothing_left(svc, ref)


def test_push_to_a_basic_auth_registry(svc: DefaultService, basic_registry: PrivateRegistry,
                                       test_images: dict[str, str], caplog: pytest.LogCaptureFixture,
                                       options: None) -> None:
    caplog.set_level(logging.DEBUG)
    ref = test_images["busybox"]
    info = svc.pull_image(ref)
    dest = f"{basic_registry.addr}/private/pushed:v1"
    svc.registry_options = RegistryOptions(credentials={basic_registry.addr: Credentials(USER, PASSWORD)})
    assert svc.push_image(ref, dest=dest) == info.id
    assert skopeo_inspect_raw(dest, creds=f"{USER}:{PASSWORD}")
    svc.registry_options = RegistryOptions(credentials={basic_registry.addr: Credentials(USER, WRONG)})
    with pytest.raises(errors.Unauthorized) as err:
        svc.push_image(ref, dest=f"{basic_registry.addr}/private/pushed:v2")
    _assert_no_secret(str(err.value) + caplog.text, PASSWORD, WRONG)
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))


def test_token_auth_with_an_identity_token(svc: DefaultService, token_setup: tuple[PrivateRegistry, TokenIssuer],
                                           caplog: pytest.LogCaptureFixture, options: None) -> None:
    """The OAuth2 refresh-token grant `docker login` stores as ``identitytoken``."""
    reg, issuer = token_setup
    caplog.set_level(logging.DEBUG)
    svc.registry_options = RegistryOptions(credentials={reg.addr: Credentials(identity_token=REFRESH, source="sso")})
    issuer.requests.clear()
    ref = f"{reg.addr}/private/busybox:latest"
    svc.pull_image(ref)
    assert [(r["grant"], r["user"]) for r in issuer.requests] == [("refresh_token", USER)]
    assert REFRESH not in caplog.text
    svc.delete_image(ref, DeleteImageOptions(synchronous=True))
