"""Conformance: build_image on every backend — steps reported, RUN output delivered, the image
there afterwards, a failing RUN failing in one line."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from ctr_magic import errors
from ctr_magic.build import StepFailed

from .conftest import Backend


def test_build_reports_steps_and_makes_the_image(be: Backend, tmp_path: Path) -> None:
    (tmp_path / "greeting.txt").write_text("hello from the context\n")
    ref = f"localhost/ctr-magic-conformance/build-{be.name}:{secrets.token_hex(3)}"
    dockerfile = f"FROM {be.images['busybox']}\nCOPY greeting.txt /\nRUN cat /greeting.txt\nCMD [\"true\"]\n"
    output: list[bytes] = []
    result = be.service.build_image(dockerfile, str(tmp_path), tags=[ref],
                                    on_output=lambda stream, data: output.append(data))
    try:
        assert [(s.number, s.total) for s in result.steps] == [(1, 4), (2, 4), (3, 4), (4, 4)]
        assert b"hello from the context" in b"".join(output)
        assert be.service.get_image(ref).name
    finally:
        be.service.delete_image(ref)


def test_failing_run_fails_in_one_line(be: Backend, tmp_path: Path) -> None:
    with pytest.raises(StepFailed) as failed:
        be.service.build_image(f"FROM {be.images['busybox']}\nRUN exit 5\n", str(tmp_path),
                               tags=[f"localhost/ctr-magic-conformance/fail:{secrets.token_hex(3)}"])
    assert str(failed.value) == "step 2/2 `RUN exit 5` exited with code 5"


def test_bad_line_is_refused_before_anything_runs(be: Backend, tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument, match="Dockerfile line 2: unknown instruction NOPE"):
        be.service.build_image("FROM busybox\nNOPE\n", str(tmp_path), tags=["localhost/x:1"])
