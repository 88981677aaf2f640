"""Registry authentication logic without a registry: challenges, scopes, Docker config, secrecy."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from ctr_magic.registry import Credentials, RegistryOptions, is_local_host, parse_www_authenticate, scope_for_request
from ctr_magic.registry.auth import Challenge
from ctr_magic.registry.dockerconfig import config_path, load_credentials


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Bearer realm="https://auth.example.com/token",service="registry.example.com",'
         'scope="repository:library/busybox:pull"',
         [Challenge("bearer", {"realm": "https://auth.example.com/token", "service": "registry.example.com",
                               "scope": "repository:library/busybox:pull"})]),
        ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
        ('bearer realm=http://127.0.0.1:9/token, service=reg', [Challenge("bearer", {"realm": "http://127.0.0.1:9/token",
                                                                                     "service": "reg"})]),
        ('Basic realm="a, with comma", Bearer realm="b",scope="repository:x:pull,push"',
         [Challenge("basic", {"realm": "a, with comma"}),
          Challenge("bearer", {"realm": "b", "scope": "repository:x:pull,push"})]),
        ('Bearer realm="quoted \\"inner\\" text"', [Challenge("bearer", {"realm": 'quoted "inner" text'})]),
        ("", []),
        ("=garbage", []),
        ('Negotiate', [Challenge("negotiate", {})]),
    ],
)
def test_parse_www_authenticate(header: str, expected: list[Challenge]) -> None:
    assert parse_www_authenticate(header) == expected


def test_parse_several_header_values() -> None:
    got = parse_www_authenticate(['Basic realm="x"', 'Bearer realm="y"'])
    assert [c.scheme for c in got] == ["basic", "bearer"]


@pytest.mark.parametrize(
    ("method", "url", "scope"),
    [
        ("GET", "https://r.example/v2/library/busybox/manifests/latest", "repository:library/busybox:pull"),
        ("HEAD", "https://r.example/v2/a/b/c/blobs/sha256:00", "repository:a/b/c:pull"),
        ("POST", "http://127.0.0.1:5000/v2/team/app/blobs/uploads/", "repository:team/app:pull,push"),
        ("PUT", "http://127.0.0.1:5000/v2/team/app/blobs/uploads/u?digest=sha256:1", "repository:team/app:pull,push"),
        ("GET", "https://r.example/v2/x/tags/list", "repository:x:pull"),
        ("GET", "https://r.example/v2/", ""),
    ],
)
def test_scope_for_request(method: str, url: str, scope: str) -> None:
    assert scope_for_request(method, url) == scope


def test_credentials_never_show_their_secret() -> None:
    creds = Credentials("alice", "hunter2-secret", identity_token="tok-secret", source="x")
    text = repr(creds) + str(creds) + repr(RegistryOptions(credentials={"h": creds}))
    assert "hunter2-secret" not in text and "tok-secret" not in text
    assert "alice" in repr(creds)
    assert not Credentials("bob")
    assert Credentials("bob", "pw")


@pytest.mark.parametrize(
    ("host", "local"),
    [("localhost:5000", True), ("127.0.0.1:5000", True), ("127.0.0.2", True), ("[::1]:5000", True), ("::1", True),
     ("registry.example.com", False), ("10.0.0.1:5000", False), ("localhost.example.com", False)],
)
def test_is_local_host(host: str, local: bool) -> None:
    assert is_local_host(host) is local


def test_plain_http_only_where_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    options = RegistryOptions(insecure_registries=("lab.example:5000", "other.example"))
    assert options.allows_plain_http("127.0.0.1:5000")
    assert options.allows_plain_http("lab.example:5000")
    assert options.allows_plain_http("other.example:443")
    assert not options.allows_plain_http("lab.example:6000")
    assert not options.allows_plain_http("registry.example.com")
    monkeypatch.setenv("CTR_MAGIC_INSECURE_REGISTRIES", " a.example:1 , b.example ")
    assert RegistryOptions.from_env().insecure_registries == ("a.example:1", "b.example")


def _write_config(directory: Path, doc: dict[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(doc))
    return path


def test_docker_config_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert config_path() == tmp_path / "config.json"
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_path() == tmp_path / "home" / ".docker" / "config.json"
    assert config_path("/x/y.json") == Path("/x/y.json")


def test_docker_config_auth_forms(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"alice:pa:ss").decode()
    path = _write_config(tmp_path, {"auths": {
        "https://lab.example:5000/v1/": {"auth": encoded},
        "plain.example": {"username": "bob", "password": "pw"},
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hubuser:hubpw").decode()},
        "sso.example": {"identitytoken": "refresh-me"},
        "broken.example": {"auth": "%%%not-base64"},
        "nocolon.example": {"auth": base64.b64encode(b"nocolon").decode()},
    }})
    lab = load_credentials("lab.example:5000", str(path))
    assert lab is not None and (lab.username, lab.password, lab.source) == ("alice", "pa:ss", str(path))
    plain = load_credentials("plain.example", str(path))
    assert plain is not None and (plain.username, plain.password) == ("bob", "pw")
    hub = load_credentials("registry-1.docker.io", str(path))
    assert hub is not None and hub.username == "hubuser"
    sso = load_credentials("sso.example", str(path))
    assert sso is not None and sso.identity_token == "refresh-me"
    assert load_credentials("broken.example", str(path)) is None
    assert load_credentials("nocolon.example", str(path)) is None
    assert load_credentials("unknown.example", str(path)) is None
    assert load_credentials("lab.example:5000", str(tmp_path / "missing.json")) is None


def test_docker_config_that_is_not_json(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    assert load_credentials("x.example", str(path)) is None
    assert "cannot read Docker config" in caplog.text


def test_credential_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real helper program on PATH, speaking the docker-credential protocol on stdin/stdout."""
    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text(
        "#!/bin/sh\nread server\n"
        'if [ "$server" = "helped.example" ]; then\n'
        '  echo \'{"ServerURL":"helped.example","Username":"carol","Secret":"from-helper"}\'\n'
        'elif [ "$server" = "tok.example" ]; then\n'
        '  echo \'{"ServerURL":"tok.example","Username":"<token>","Secret":"id-token"}\'\n'
        "else echo 'credentials not found in native keychain'; exit 1; fi\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    path = _write_config(tmp_path / "cfg", {"credHelpers": {"helped.example": "fake", "tok.example": "fake"},
                                            "credsStore": "fake"})
    helped = load_credentials("helped.example", str(path))
    assert helped is not None and (helped.username, helped.password) == ("carol", "from-helper")
    assert helped.source == "docker-credential-fake"
    token = load_credentials("tok.example", str(path))
    assert token is not None and token.identity_token == "id-token" and not token.password
    assert load_credentials("elsewhere.example", str(path)) is None  # credsStore answers "not found"
    missing = _write_config(tmp_path / "cfg2", {"credHelpers": {"x.example": "not-installed"}})
    assert load_credentials("x.example", str(missing)) is None
