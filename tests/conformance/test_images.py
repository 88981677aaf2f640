"""Conformance: pull, get, list and delete images, on every backend."""

from __future__ import annotations

import contextlib

import pytest

from ctr_magic import errors
from ctr_magic.reference import normalize
from ctr_magic.testimages import registry_manifest_digest
from ctr_magic.types import DeleteImageOptions, LayerProgress, PullImageOptions

from .conftest import Backend


def test_pull_reports_progress_and_returns_the_image(be: Backend) -> None:
    ref = be.images["layers"]
    with contextlib.suppress(errors.NotFound):
        be.service.delete_image(ref, DeleteImageOptions(synchronous=True))
    events: list[LayerProgress] = []
    info = be.service.pull_image(ref, PullImageOptions(progress=events.append))

    assert info.name == normalize(ref)
    registry, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":")
    if be.supports("image.digest_id"):
        assert info.id == registry_manifest_digest(registry, repo, tag)
    assert events, "no progress event at all"
    assert all(e.ref == normalize(ref) for e in events)
    assert {"downloading", "done", "unpacked", "exists"} & {e.state for e in events}
    if be.name != "apple":  # socktainer's combined bar carries no layer names (see capabilities)
        assert len({e.digest for e in events}) >= 5, "a 5-layer image should report several layers"


def test_get_and_list_find_the_pulled_image(be: Backend) -> None:
    ref = be.images["busybox"]
    pulled = be.service.pull_image(ref)
    got = be.service.get_image(ref)
    assert got.id == pulled.id
    assert got.name == normalize(ref)
    names = {image.name for image in be.service.list_images()}
    assert normalize(ref) in names


def test_get_image_falls_back_to_a_short_name(be: Backend) -> None:
    ref = be.images["busybox"]
    be.service.pull_image(ref)
    short = ref.split("/", 1)[1]  # ctr-magic/busybox:latest
    assert be.service.get_image(short).name == normalize(ref)


def test_pull_of_an_unknown_image_is_not_found_and_leaves_nothing(be: Backend) -> None:
    registry = be.images["busybox"].split("/", 1)[0]
    ref = f"{registry}/ctr-magic/does-not-exist:latest"
    with pytest.raises(errors.NotFound, match="does-not-exist"):
        be.service.pull_image(ref)
    assert normalize(ref) not in {image.name for image in be.service.list_images()}


def test_pull_and_get_reject_an_empty_reference(be: Backend) -> None:
    with pytest.raises(errors.InvalidArgument):
        be.service.pull_image("")
    with pytest.raises(errors.InvalidArgument):
        be.service.get_image("")


def test_get_of_an_unknown_image_is_not_found(be: Backend) -> None:
    with pytest.raises(errors.NotFound):
        be.service.get_image("127.0.0.1:1/nowhere/nothing:none")


def test_delete_image_removes_it(be: Backend) -> None:
    ref = be.images["config"]
    be.service.pull_image(ref)
    be.service.delete_image(ref, DeleteImageOptions(synchronous=True))
    assert normalize(ref) not in {image.name for image in be.service.list_images()}
    with pytest.raises(errors.NotFound):
        be.service.get_image(ref)
