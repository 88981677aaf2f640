"""Hostile input: every parser of outside text lets only CtrError escape, and stays fast.

Property-based (hypothesis), seeded and bounded so each test takes a few seconds at most.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from ctr_magic import cni, errors
from ctr_magic.docker.errors import message_of
from ctr_magic.docker.transport import json_body
from ctr_magic.jsondoc import MAX_DEPTH, load_json, nesting_depth
from ctr_magic.notebook.magics import argtypes, parsing
from ctr_magic.notebook.magics.splitting import split_words
from ctr_magic.platforms import parse_platform
from ctr_magic.reference import normalize, parse_reference
from ctr_magic.registry import manifests

BOUNDED = settings(max_examples=300, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow])
# Characters that matter to the parsers, plus any text at all.
SHELLISH = st.text(alphabet=st.sampled_from(list(" \t\n'\"\\ab=:-/@$${}³\x00é")), max_size=40)
ANY_TEXT = st.one_of(SHELLISH, st.text(max_size=60))
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10))
JSON_DOC = st.recursive(JSON_LEAF, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                        max_leaves=20)
MANIFEST_KEYS = st.sampled_from(["mediaType", "schemaVersion", "config", "layers", "manifests", "digest",
                                 "size", "platform", "annotations", "urls"])
MANIFESTISH = st.recursive(JSON_LEAF, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                            st.dictionaries(MANIFEST_KEYS, kids, max_size=6)),
                           max_leaves=25)


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# -- the defects the issue names (each failed before the fix) ---------------------------------------
def test_cni_config_nested_900_levels_is_a_ctr_error(tmp_path: Path) -> None:
    # Before: RecursionError from copy.deepcopy of the plugins.
    doc = {"cniVersion": "1.0.0", "name": "deep", "plugins": [{"type": "bridge", "x": json.loads(deep(900))}]}
    (tmp_path / "10-deep.conflist").write_text(json.dumps(doc))
    with pytest.raises(errors.InvalidArgument, match=r"10-deep\.conflist.*nests more than"):
        cni.load_network_configs(str(tmp_path))


def test_parse_signal_superscript_digit_is_a_ctr_error() -> None:
    # Before: ValueError from int('³').
    with pytest.raises(errors.InvalidArgument, match="unknown signal"):
        argtypes.parse_signal("³")


def test_one_megabyte_magic_line_splits_quickly() -> None:
    # Before: shlex took 7.6-14.5 s here (it grows each word one character at a time). The bound is
    # about the algorithm, not the machine: linear takes milliseconds, 3 s leaves room for a busy CPU.
    line = "run box -- echo " + "x" * 1_000_000 + ' "' + "y" * 100_000 + '"'
    started = time.monotonic()
    words = parsing.split_line(line)
    assert words[-2:] == ["x" * 1_000_000, "y" * 100_000]
    assert time.monotonic() - started < 3


def test_invalid_json_manifest_names_the_image() -> None:
    with pytest.raises(errors.CtrError, match=r"image 127\.0\.0\.1:5000/app:1.*not valid JSON"):
        manifests.parse(b"{not json", manifests.MEDIA_OCI_MANIFEST, "image 127.0.0.1:5000/app:1")


# -- properties ---------------------------------------------------------------------------------------
@seed(14)
@BOUNDED
@given(SHELLISH)
def test_split_words_agrees_with_shlex(line: str) -> None:
    try:
        expected = shlex.split(line, posix=True)
    except ValueError:
        with pytest.raises(errors.InvalidArgument):
            split_words(line)
        return
    assert split_words(line) == expected


@seed(14)
@BOUNDED
@given(ANY_TEXT)
def test_magic_lines_raise_only_ctr_errors(line: str) -> None:
    with contextlib.suppress(errors.CtrError, parsing.HelpShown):
        parsing.parse(parsing.split_line(line))


@seed(14)
@BOUNDED
@given(ANY_TEXT)
def test_option_values_raise_only_ctr_errors(value: str) -> None:
    parsers = [
        argtypes.parse_signal,
        argtypes.parse_duration,
        lambda v: argtypes.parse_volume(v, cwd="/"),
        lambda v: argtypes.parse_env([v], environ={}),
        lambda v: argtypes.parse_labels([v]),
        argtypes.check_id,
        parse_reference,
        normalize,
        parse_platform,
    ]
    for parse in parsers:
        with contextlib.suppress(errors.CtrError):
            parse(value)


@seed(14)
@BOUNDED
@given(st.one_of(JSON_DOC.map(json.dumps), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
def test_cni_configs_raise_only_ctr_errors(text: str) -> None:
    conf_dir = os.path.join(tempfile.gettempdir(), f"cni-hostile-{os.getpid()}")
    os.makedirs(conf_dir, exist_ok=True)
    with open(os.path.join(conf_dir, "10-x.conflist"), "w", encoding="utf-8", errors="surrogatepass") as fh:
        fh.write(text)
    with contextlib.suppress(errors.CtrError):
        cni.load_network_configs(conf_dir)


@seed(14)
@BOUNDED
@given(st.one_of(MANIFESTISH.map(lambda d: json.dumps(d).encode()), st.binary(max_size=60)),
       st.sampled_from([manifests.MEDIA_OCI_MANIFEST, manifests.MEDIA_OCI_INDEX, "application/json", ""]))
def test_registry_json_raises_only_ctr_errors(data: bytes, media_type: str) -> None:
    with contextlib.suppress(errors.CtrError):
        manifests.parse(data, manifests.media_type_of(data, media_type), "image r/x:1")


@seed(14)
@BOUNDED
@given(st.one_of(JSON_DOC.map(lambda d: json.dumps(d).encode()), st.binary(max_size=60)),
       st.sampled_from([dict, list]))
def test_engine_api_json_raises_only_ctr_errors(body: bytes, shape: type) -> None:
    # A built httpx.Response: the hostile body a real dockerd cannot be made to send.
    resp = httpx.Response(200, content=body, request=httpx.Request("GET", "http://docker/v1.43/containers/json"))
    with contextlib.suppress(errors.CtrError):
        assert isinstance(json_body(resp, shape), shape)
    assert isinstance(message_of(body), str)


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 900, 100_000])
def test_deep_documents_are_refused_without_recursion(levels: int) -> None:
    with pytest.raises(errors.InvalidArgument, match="deep"):
        load_json(deep(levels), "document")
    assert nesting_depth(json.loads(deep(50))) == 50
