import pytest

from ctr_magic.errors import InvalidArgument
from ctr_magic.reference import match_stored_name, normalize, parse_reference

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("user/app", "docker.io/user/app:latest"),
        ("python:3.12", "docker.io/library/python:3.12"),
        ("ghcr.io/org/tool:v1.2", "ghcr.io/org/tool:v1.2"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
        (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}"),
        ("a__b/c-d.e_f:T_1.x-y", "docker.io/a__b/c-d.e_f:T_1.x-y"),
        ("  busybox  ", "docker.io/library/busybox:latest"),
        ("[::1]:5000/app", "[::1]:5000/app:latest"),
    ],
)
def test_normalize(given: str, expected: str) -> None:
    assert normalize(given) == expected


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("Busybox", "lowercase"),
        ("docker.io/User/app", "lowercase"),
        ("busybox:", "invalid tag"),
        ("busybox:-bad", "invalid tag"),
        ("busybox:" + "x" * 129, "invalid tag"),
        ("busybox@sha256:abc", "digest"),
        ("busybox@nonsense", "digest"),
        ("a//b", "path component"),
        ("a/b/", "path component"),
        ("-a", "path component"),
        ("a--", "path component"),
        ("bus box", "white space"),
        ("https://example.test/app", "URL scheme"),
        (":tag", "no repository"),
    ],
)
def test_malformed(given: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_reference(given)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_parts_and_familiar() -> None:
    ref = parse_reference("busybox")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("docker.io", "library/busybox", "latest", "")
    assert ref.familiar() == "busybox:latest"
    assert ref.registry_host == "registry-1.docker.io"
    assert ref.object == "latest"
    local = parse_reference(f"127.0.0.1:5000/x/y@{DIGEST}")
    assert local.registry_host == "127.0.0.1:5000"
    assert local.object == DIGEST
    assert local.familiar() == f"127.0.0.1:5000/x/y@{DIGEST}"
    assert parse_reference("user/app").familiar() == "user/app:latest"


def test_match_stored_name() -> None:
    stored = ["docker.io/library/busybox:latest", "127.0.0.1:5000/ctr-magic/busybox:latest", "alpine:3"]
    assert match_stored_name("busybox", stored) == "docker.io/library/busybox:latest"
    assert match_stored_name("alpine:3", stored) == "alpine:3"
    assert match_stored_name("ctr-magic/busybox:latest", stored) == "127.0.0.1:5000/ctr-magic/busybox:latest"
    assert match_stored_name("nothing", stored) is None
