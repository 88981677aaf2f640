"""Frames and value codecs shared by the kernel and the agent inside the container.

This module is also *sent* into the container (as source) and run there by whatever ``python3``
the image has, so it imports only the standard library at import time, keeps to Python 3.7
syntax and imports numpy / pandas / pyarrow only when a value needs them.

A frame is one kind byte, an 8-byte big-endian length and the payload. A value frame's payload
is a 4-byte header length, a JSON header (name, codec, codec metadata) and the encoded bytes.

Codecs, and whether decoding them can run code:

=========  =====================================================  ==============
codec      what                                                   unpickles?
=========  =====================================================  ==============
bytes      bytes / bytearray as they are                          no
json       JSON values (tuples arrive as lists)                   no
npy        numpy arrays and scalars (``allow_pickle=False``)      no
arrow      DataFrames and Series as an Arrow IPC stream           no
columns    DataFrames and Series column by column as npy arrays   no
           (pandas and numpy of *any* version on either side)
pickle     anything picklable                                     **yes**
=========  =====================================================  ==============
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import threading

try:  # in the kernel: a package module; in the container: installed by the bootstrap under this name
    from .columns import CannotCross, columns_decode, columns_encode, load_npy
except ImportError:
    from ctr_magic_columns import CannotCross, columns_decode, columns_encode, load_npy  # type: ignore

HEADER = struct.Struct(">cQ")
VALUE_HEADER = struct.Struct(">I")

# frame kinds, kernel -> agent
RUN = b"R"
VALUE = b"V"
INTERRUPT = b"I"
QUIT = b"Q"
# frame kinds, agent -> kernel
HELLO = b"H"
STDOUT = b"O"
STDERR = b"E"
ERROR = b"X"
DONE = b"D"

FORMATS = ("pickle", "arrow", "json")
SAFE_CODECS = frozenset({"bytes", "json", "npy", "arrow", "columns"})


class FrameWriter:
    """Writes frames to a binary stream; one lock so concurrent writers never interleave."""

    def __init__(self, stream, chunk=1 << 20):
        self.stream = stream
        self.chunk = chunk
        self.lock = threading.Lock()

    def send(self, kind, *parts):
        views = [memoryview(p).cast("B") for p in parts]
        total = sum(len(v) for v in views)
        with self.lock:
            self.stream.write(HEADER.pack(kind, total))
            for view in views:
                for start in range(0, len(view), self.chunk):
                    self.stream.write(view[start:start + self.chunk])
            flush = getattr(self.stream, "flush", None)
            if flush is not None:
                flush()

    def send_json(self, kind, doc):
        self.send(kind, json.dumps(doc).encode())


def read_exact(stream, size):
    """*size* bytes from a binary stream, or None at EOF (a short read at EOF is an EOF too)."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = stream.readinto(view[got:])
        if not n:
            return None
        got += n
    return buf


def read_frame(stream):
    """(kind, payload) of the next frame, or (None, None) at EOF."""
    head = read_exact(stream, HEADER.size)
    if head is None:
        return None, None
    kind, size = HEADER.unpack(bytes(head))
    payload = read_exact(stream, size) if size else bytearray()
    if payload is None:
        return None, None
    return kind, payload


# ------------------------------------------------------------------------------------ values


def value_parts(name, codec, meta, data_parts):
    header = json.dumps({"name": name, "codec": codec, "meta": meta}).encode()
    return [VALUE_HEADER.pack(len(header)), header] + list(data_parts)


def split_value(payload):
    """(name, codec, meta, data memoryview) of a value frame's payload."""
    view = memoryview(payload)
    (length,) = VALUE_HEADER.unpack(bytes(view[:VALUE_HEADER.size]))
    header = json.loads(bytes(view[VALUE_HEADER.size:VALUE_HEADER.size + length]).decode())
    return header["name"], header["codec"], header.get("meta") or {}, view[VALUE_HEADER.size + length:]


def _module_of(value):
    return type(value).__module__.split(".", 1)[0]


def _is_frame(value):
    if _module_of(value) != "pandas":
        return False
    name = type(value).__name__
    return name in ("DataFrame", "Series")


def _is_ndarray(value):
    return _module_of(value) == "numpy" and type(value).__name__ == "ndarray"


def _is_numpy_scalar(value):
    if _module_of(value) != "numpy":
        return False
    import numpy

    return isinstance(value, numpy.generic) and value.dtype.kind not in "OV"


def _json_ok(value, depth=0):
    if depth > 100:
        return False
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_ok(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_ok(v, depth + 1) for k, v in value.items())
    return False


def describe(value):
    """A few words for a value's type, for error messages."""
    kind = type(value)
    if kind.__name__ == "function" and getattr(value, "__name__", "") == "<lambda>":
        return "a lambda"
    if isinstance(value, io.IOBase):
        return "an open file"
    if kind.__name__ in ("function", "builtin_function_or_method"):
        return "a function"
    return "a " + (kind.__module__ + "." if kind.__module__ not in ("builtins", "__main__") else "") + kind.__name__


def choose_codec(value, fmt, peer, local):
    """The codec for *value* in format *fmt* given what both sides have (``{"pyarrow": "..."}``...)."""
    both = lambda lib: bool(peer.get(lib)) and bool(local.get(lib))  # noqa: E731
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if _is_frame(value):
        if fmt == "json":
            return "json-table"
        if both("pyarrow"):
            return "arrow"
        if not (both("pandas") and both("numpy")):
            if fmt == "pickle":
                return "pickle"
            raise CannotCross("a DataFrame needs pandas (and pyarrow or numpy) on both sides for --format " + fmt)
        if fmt == "pickle" and peer.get("pandas") == local.get("pandas") and peer.get("numpy") == local.get("numpy"):
            return "pickle"
        return "columns"
    if (_is_ndarray(value) and value.dtype.kind not in "OV") or _is_numpy_scalar(value):
        if fmt == "json":
            raise CannotCross(describe(value) + " is not a JSON value (use --format arrow or pickle)")
        if both("numpy"):
            return "npy"
        if fmt == "pickle":
            return "pickle"
        raise CannotCross("numpy is missing on one side")
    if fmt != "pickle":
        if _json_ok(value):
            return "json"
        raise CannotCross(describe(value) + " is not a DataFrame, array, bytes or JSON value; "
                          "only --format pickle sends it")
    return "pickle"


def encode(value, codec, protocol):
    """(meta, data parts) of *value* in *codec*; raises CannotCross with the reason."""
    if codec == "bytes":
        return {"type": type(value).__name__}, [value]
    if codec == "json":
        return {}, [json.dumps(value).encode()]
    if codec == "json-table":
        series = type(value).__name__ == "Series"
        frame = value.to_frame() if series else value
        return {"series": series}, [frame.to_json(orient="table", date_unit="ns").encode()]
    if codec == "npy":
        import numpy

        scalar = not _is_ndarray(value)
        buf = io.BytesIO()
        numpy.save(buf, numpy.asarray(value), allow_pickle=False)
        return {"scalar": scalar}, [buf.getbuffer()]
    if codec == "arrow":
        return _arrow_encode(value)
    if codec == "columns":
        return columns_encode(value)
    try:
        _refuse_by_name(value)
        return {}, [pickle.dumps(value, protocol=protocol)]
    except CannotCross:
        raise
    except Exception as exc:
        raise CannotCross(describe(value) + " cannot be pickled (" + _one_line(exc) + ")") from None


def _refuse_by_name(value):
    """Functions and classes of the notebook pickle *by name*: the other side cannot find them."""
    module = getattr(value, "__module__", None)
    if module == "__main__" and (isinstance(value, type) or (callable(value) and hasattr(value, "__code__"))):
        raise CannotCross(describe(value) + " defined in the notebook is pickled by name, and the container "
                          "does not have it (send data, define the code in the cell)")


def decode(codec, meta, data, allow_pickle=True):
    if codec == "bytes":
        raw = bytes(data)
        return bytearray(raw) if meta.get("type") == "bytearray" else raw
    if codec == "json":
        return json.loads(bytes(data).decode())
    if codec == "json-table":
        import pandas

        frame = pandas.read_json(io.StringIO(bytes(data).decode()), orient="table")
        return frame.iloc[:, 0] if meta.get("series") else frame
    if codec == "npy":
        array = load_npy(memoryview(data))
        return array[()] if meta.get("scalar") else array
    if codec == "arrow":
        return _arrow_decode(meta, data)
    if codec == "columns":
        return columns_decode(meta, data)
    if codec == "pickle":
        if not allow_pickle:
            raise CannotCross("it arrived pickled, and --format arrow/json never unpickles")
        return pickle.loads(data)
    raise CannotCross("unknown codec " + repr(codec))


def _one_line(exc):
    text = (str(exc) or type(exc).__name__).strip().splitlines()
    return type(exc).__name__ + ": " + (text[0] if text else "")


# ------------------------------------------------------------------------------------ arrow


def _arrow_encode(value):
    import pyarrow

    series = type(value).__name__ == "Series"
    frame = value.to_frame(name=value.name if value.name is not None else "__series__") if series else value
    try:
        table = pyarrow.Table.from_pandas(frame, preserve_index=None)
    except Exception as exc:
        raise CannotCross("Arrow cannot hold it (" + _one_line(exc) + ")") from None
    sink = pyarrow.BufferOutputStream()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return {"series": series, "name_is_none": series and value.name is None}, [sink.getvalue()]


def _arrow_decode(meta, data):
    import pyarrow

    table = pyarrow.ipc.open_stream(pyarrow.py_buffer(data)).read_all()
    frame = table.to_pandas()
    if meta.get("series"):
        series = frame.iloc[:, 0]
        return series.rename(None) if meta.get("name_is_none") else series
    return frame
