"""Conformance: what a backend declares unsupported behaves as declared (NotSupported, no-op)."""

from __future__ import annotations

import pytest

from ctr_magic import capabilities, errors
from ctr_magic.types import CreateContainerRequest, NetworkSetupRequest

from .conftest import Backend


def test_every_backend_declares_every_capability() -> None:
    for backend in capabilities.BACKENDS:
        for cap in capabilities.CAPABILITIES:
            capabilities.entry(backend, cap.key)
    table = capabilities.render_markdown()
    assert table.count("\n|") == len(capabilities.CAPABILITIES) + 1


def test_snapshot_methods(be: Backend) -> None:
    svc = be.service
    calls = {
        "list_snapshots": lambda: svc.list_snapshots("overlayfs"),
        "prepare_snapshot": lambda: svc.prepare_snapshot("overlayfs", "cf-key", "cf-parent-missing"),
        "commit_snapshot": lambda: svc.commit_snapshot("overlayfs", "cf-name", "cf-key-missing"),
        "snapshot_mounts": lambda: svc.snapshot_mounts("overlayfs", "cf-key-missing"),
        "create_container_from_snapshot": lambda: svc.create_container_from_snapshot(
            CreateContainerRequest(id="cf-from-snap", image_ref=be.images["busybox"], snapshot_id="cf-missing")
        ),
    }
    for name, call in calls.items():
        if be.supports("snapshots"):
            # Real snapshot behaviour is covered by the containerd suite; here: missing keys are NotFound.
            if name == "list_snapshots":
                assert isinstance(call(), list)
            else:
                with pytest.raises(errors.NotFound):
                    call()
        else:
            with pytest.raises(errors.NotSupported, match=be.name):
                call()


def test_network_calls(be: Backend, box: str) -> None:
    with pytest.raises(errors.NotFound):
        be.service.setup_network(NetworkSetupRequest(container_id="cf-never-created"))
    if not be.supports("network"):
        req = NetworkSetupRequest(container_id=box)
        assert be.service.setup_network(req) is None
        assert be.service.remove_network(req) is None


def test_the_feature_table_comes_from_the_backend_classes() -> None:
    from ctr_magic import features

    table = capabilities.feature_table()
    classes = capabilities.backend_classes()
    for backend in capabilities.BACKENDS:
        for item in features.FEATURES:
            declared = table[backend][item.title].support is not capabilities.Support.NO
            assert declared == features.implemented_by(classes[backend], item.protocol), (backend, item.title)
    rendered = capabilities.render_features_markdown()
    nowhere = [item.title for item in features.FEATURES
               if not any(table[backend][item.title].support is not capabilities.Support.NO
                          for backend in capabilities.BACKENDS)]
    # a row per feature some backend has; the ones none of them has (the cluster's) share one line below
    assert rendered.count("\n|") == len(features.FEATURES) - len(nowhere) + 1
    assert all(title in rendered.split("\n\n")[-1] for title in nowhere)


def test_require_says_not_supported_in_one_line_with_the_way_out(be: Backend) -> None:
    from ctr_magic import features

    for item in features.FEATURES:
        if features.supports(be.service, item.protocol):
            assert features.require(be.service, item.protocol) is be.service
            continue
        with pytest.raises(errors.NotSupported) as caught:
            features.require(be.service, item.protocol, "%ctr something")
        assert "\n" not in str(caught.value) and be.name in str(caught.value)
        assert caught.value.hint == item.way_out
