"""DataFrames and Series column by column as ``.npy`` arrays: pandas and numpy of any version on either side.

Part of what is sent into the container (see :mod:`.wire`): standard library at import time,
Python 3.7 syntax, numpy and pandas imported when a value needs them. Nothing here unpickles.
"""

from __future__ import annotations

import io


class CannotCross(Exception):
    """A value cannot be encoded in the chosen format (the message says why)."""


def _npy(array):
    import numpy

    buf = io.BytesIO()
    numpy.save(buf, array, allow_pickle=False)
    return buf.getbuffer()


def _column(values, arrays):
    """Metadata for one column (a Series or Index), appending its npy arrays to *arrays*."""
    import numpy
    import pandas

    dtype = values.dtype
    if isinstance(dtype, pandas.CategoricalDtype):
        codes = numpy.asarray(values.cat.codes if isinstance(values, pandas.Series) else values.codes)
        arrays.append(_npy(codes))
        categories = _column(pandas.Series(dtype.categories), arrays)
        return {"kind": "category", "ordered": bool(dtype.ordered), "categories": categories}
    if isinstance(dtype, pandas.DatetimeTZDtype):
        tz = str(dtype.tz)
        utc = pandas.Series(values).dt.tz_convert("UTC").dt.tz_localize(None)
        arrays.append(_npy(numpy.asarray(utc)))
        return {"kind": "datetimetz", "tz": tz}
    if isinstance(dtype, numpy.dtype) and dtype.kind not in "OUSV":
        arrays.append(_npy(numpy.asarray(values)))
        return {"kind": "numpy"}
    mask = numpy.asarray(pandas.isna(values), dtype=bool)
    name = str(dtype)
    if dtype.kind in "biuf" or name in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
                                        "Float32", "Float64", "boolean"):
        base = numpy.dtype(dtype.numpy_dtype if hasattr(dtype, "numpy_dtype") else dtype.type)
        filled = numpy.asarray(values.to_numpy(dtype=base, na_value=base.type(0)))
        arrays.extend([_npy(filled), _npy(mask)])
        return {"kind": "masked", "dtype": name}
    items = list(values)
    if all(m or isinstance(v, str) for v, m in zip(items, mask)):
        text = numpy.array(["" if m else v for v, m in zip(items, mask)], dtype=str)
        arrays.extend([_npy(text), _npy(mask)])
        na = "none" if all(v is None for v, m in zip(items, mask) if m) else "nan"
        return {"kind": "strings", "dtype": "string" if name.startswith("string") else name, "na": na}
    raise CannotCross("column of " + name + " values that are not all strings")


def _name(label):
    if label is None or isinstance(label, (str, int, float, bool)):
        return label
    raise CannotCross("a column or index name of type " + type(label).__name__)


def columns_encode(value):
    import pandas

    series = isinstance(value, pandas.Series)
    frame = value.to_frame(name="__series__") if series else value
    if isinstance(frame.columns, pandas.MultiIndex) or isinstance(frame.index, pandas.MultiIndex):
        raise CannotCross("a MultiIndex needs pickle or Arrow")
    arrays = []
    columns = []
    for position in range(frame.shape[1]):
        column = frame.iloc[:, position]
        columns.append({"name": _name(frame.columns[position]), **_column(column, arrays)})
    index = frame.index
    if isinstance(index, pandas.RangeIndex):
        index_meta = {"kind": "range", "start": index.start, "stop": index.stop, "step": index.step}
    else:
        index_meta = _column(index, arrays)
    index_meta["name"] = _name(index.name)
    meta = {"series": series, "series_name": _name(value.name) if series else None, "columns": columns,
            "index": index_meta, "sizes": [len(a) for a in arrays]}
    return meta, arrays


def _rebuild(meta, arrays):
    import numpy
    import pandas

    kind = meta["kind"]
    if kind == "numpy":
        return pandas.Series(next(arrays))
    if kind == "datetimetz":
        return pandas.Series(next(arrays)).dt.tz_localize("UTC").dt.tz_convert(meta["tz"])
    if kind == "category":
        codes = next(arrays)
        categories = _rebuild(meta["categories"], arrays)
        cat = pandas.Categorical.from_codes(codes, categories=pandas.Index(categories), ordered=meta["ordered"])
        return pandas.Series(cat)
    values, mask = next(arrays), next(arrays)
    if kind == "masked":
        try:
            return pandas.Series(pandas.array(values, dtype=meta["dtype"]).copy()).mask(mask)
        except TypeError:  # an older pandas without that extension dtype
            return pandas.Series(values).mask(mask)
    dtype = meta["dtype"]
    objects = numpy.array(values, dtype=object)
    objects[mask] = None if meta.get("na") == "none" else float("nan")
    if dtype in ("string", "str"):
        try:
            return pandas.Series(objects, dtype=dtype)
        except TypeError:  # "str" is pandas 3's; older pandas keep strings as objects
            return pandas.Series(objects, dtype=object)
    return pandas.Series(objects, dtype=object)


def load_npy(view):
    """An array from .npy bytes without copying them (the array is a view of *view*); never unpickles."""
    import numpy
    from numpy.lib import format as npy_format

    head = io.BytesIO(bytes(view[:4096]))
    version = npy_format.read_magic(head)
    if version == (1, 0):
        shape, fortran, dtype = npy_format.read_array_header_1_0(head)
    elif version == (2, 0):
        shape, fortran, dtype = npy_format.read_array_header_2_0(head)
    else:
        return numpy.load(io.BytesIO(view), allow_pickle=False)
    if dtype.hasobject:
        raise CannotCross("an array of Python objects needs pickle")
    count = 1
    for dim in shape:
        count *= dim
    array = numpy.frombuffer(view, dtype=dtype, count=count, offset=head.tell())
    return array.reshape(shape, order="F" if fortran else "C")


def columns_decode(meta, data):
    import pandas

    blobs = []
    offset = 0
    view = memoryview(data)
    for size in meta["sizes"]:
        blobs.append(load_npy(view[offset:offset + size]))
        offset += size
    arrays = iter(blobs)
    series_list = [_rebuild(column, arrays) for column in meta["columns"]]
    index_meta = meta["index"]
    if index_meta["kind"] == "range":
        index = pandas.RangeIndex(index_meta["start"], index_meta["stop"], index_meta["step"])
    else:
        index = pandas.Index(_rebuild(index_meta, arrays))
    index.name = index_meta["name"]
    frame = pandas.DataFrame({i: s.reset_index(drop=True) for i, s in enumerate(series_list)}) if series_list \
        else pandas.DataFrame(index=range(len(index)))
    frame.columns = [column["name"] for column in meta["columns"]]
    frame.index = index
    if meta["series"]:
        return frame.iloc[:, 0].rename(meta["series_name"])
    return frame
