"""The pycell wire format and codecs, in one process (the container side runs the same module)."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pandas as pd
import pytest

from ctr_magic.pycell import wire
from ctr_magic.pycell.bootstrap import agent_command, agent_script, agent_stdin_prefix
from ctr_magic.pycell.client import local_libraries

LOCAL = local_libraries()
OLD_PANDAS = {"numpy": "1.24.2", "pandas": "1.5.3", "pyarrow": ""}


def cross(value: object, fmt: str = "pickle", peer: dict[str, str] = LOCAL) -> object:
    codec = wire.choose_codec(value, fmt, peer, LOCAL)
    meta, parts = wire.encode(value, codec, pickle.HIGHEST_PROTOCOL)
    stream = io.BytesIO()
    wire.FrameWriter(stream).send(wire.VALUE, *wire.value_parts("v", codec, meta, parts))
    stream.seek(0)
    kind, payload = wire.read_frame(io.BufferedReader(stream))
    assert kind == wire.VALUE
    name, codec2, meta2, data = wire.split_value(payload)
    assert (name, codec2) == ("v", codec)
    return wire.decode(codec2, meta2, data, allow_pickle=fmt == "pickle")


def test_frames_and_eof() -> None:
    stream = io.BytesIO()
    writer = wire.FrameWriter(stream, chunk=3)
    writer.send(wire.STDOUT, b"hello", b" world")
    writer.send_json(wire.DONE, {"x": 1})
    stream.seek(0)
    reader = io.BufferedReader(stream)
    assert wire.read_frame(reader) == (wire.STDOUT, bytearray(b"hello world"))
    assert wire.read_frame(reader)[0] == wire.DONE
    assert wire.read_frame(reader) == (None, None)


def test_codec_choice() -> None:
    frame = pd.DataFrame({"a": [1]})
    assert wire.choose_codec(frame, "pickle", LOCAL, LOCAL) == "arrow"  # pyarrow both sides
    assert wire.choose_codec(frame, "pickle", OLD_PANDAS, LOCAL) == "columns"  # versions differ, no pyarrow
    same_no_arrow = dict(LOCAL, pyarrow="")
    assert wire.choose_codec(frame, "pickle", same_no_arrow, same_no_arrow) == "pickle"
    assert wire.choose_codec(frame, "json", LOCAL, LOCAL) == "json-table"
    assert wire.choose_codec(np.arange(3), "arrow", OLD_PANDAS, LOCAL) == "npy"
    assert wire.choose_codec({"k": [1]}, "arrow", LOCAL, LOCAL) == "json"
    assert wire.choose_codec(b"x", "json", LOCAL, LOCAL) == "bytes"
    with pytest.raises(wire.CannotCross, match="only --format pickle"):
        wire.choose_codec({1, 2}, "arrow", LOCAL, LOCAL)
    with pytest.raises(wire.CannotCross, match="not a JSON value"):
        wire.choose_codec(np.arange(2), "json", LOCAL, LOCAL)


def test_safe_formats_never_unpickle() -> None:
    with pytest.raises(wire.CannotCross, match="never unpickles"):
        wire.decode("pickle", {}, pickle.dumps(1), allow_pickle=False)
    assert wire.SAFE_CODECS.isdisjoint({"pickle"})


def test_columns_codec_keeps_dtypes() -> None:
    frame = pd.DataFrame({
        "i": [1, 2, 3], "f": [0.5, np.nan, 1.5], "b": [True, False, True],
        "tz": pd.date_range("2024-01-01", periods=3, tz="America/New_York", unit="ns"),
        "cat": pd.Categorical(["x", "y", "x"]), "n": pd.array([1, None, 3], dtype="Int64"),
        "s": ["a", None, "c"], "td": pd.to_timedelta([1, 2, 3], unit="s"),
    }, index=pd.Index(["r1", "r2", "r3"], name="row"))  # fmt: skip
    back = cross(frame, "arrow", OLD_PANDAS)
    pd.testing.assert_frame_equal(back, frame)
    series = frame["tz"].rename("when")
    pd.testing.assert_series_equal(cross(series, "arrow", OLD_PANDAS), series)


def test_columns_codec_refuses_what_it_cannot_hold() -> None:
    frame = pd.DataFrame({"mixed": [1, "a", None]}, dtype=object)
    with pytest.raises(wire.CannotCross, match="not all strings"):
        cross(frame, "arrow", OLD_PANDAS)
    multi = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "b"), ("a", "c")]))
    with pytest.raises(wire.CannotCross, match="MultiIndex"):
        cross(multi, "arrow", OLD_PANDAS)


def test_arrow_and_npy_and_json_round_trips() -> None:
    frame = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=2, tz="UTC"), "v": [1.0, 2.0]})
    pd.testing.assert_frame_equal(cross(frame), frame)
    array = np.arange(6, dtype=np.uint16).reshape(2, 3)
    np.testing.assert_array_equal(cross(array, "arrow"), array)
    assert cross(np.int64(7), "arrow") == 7 and isinstance(cross(np.int64(7), "arrow"), np.int64)
    assert cross({"a": [1, 2.5, None]}, "json") == {"a": [1, 2.5, None]}
    assert cross(bytearray(b"xy")) == bytearray(b"xy")


def test_unpicklable_values_say_why() -> None:
    with pytest.raises(wire.CannotCross, match="a lambda cannot be pickled"):
        cross(lambda: 1)
    with open(__file__) as handle, pytest.raises(wire.CannotCross, match="an open file cannot be pickled"):
        cross(handle)


def test_bootstrap_is_short_and_loads_the_agent() -> None:
    command = agent_command()
    assert command[:3] == ["python3", "-u", "-c"] and len(command[3]) < 200
    script = agent_script()
    compile(script, "<agent>", "exec")
    prefix = agent_stdin_prefix()
    length, _, rest = prefix.partition(b"\n")
    assert int(length) == len(rest) == len(script)
