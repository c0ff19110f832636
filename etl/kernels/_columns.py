"""Columns as they really are, turned into numpy arrays plus null masks, and back.

A kernel sees only plain numpy arrays. Every pandas column, whatever its
backing, becomes ``values`` (a contiguous numpy array of the requested *kind*)
and ``null`` (a bool array, ``True`` where the value is missing, or ``None`` when
the column has no nulls). Under a null the value is unspecified.

Kinds
-----
``"int64"``
    Integers of any width and backing (``int32``, ``Int64``, ``int64[pyarrow]``),
    timestamps (nanoseconds since the epoch, UTC; naive timestamps are taken as
    UTC) and durations (nanoseconds).
``"uint64"``
    Non-negative integers, e.g. key hashes.
``"float64"``
    Floats and integers. In a numpy ``float64`` column NaN is a *value*, not a
    null; in ``Float64`` or ``double[pyarrow]`` only ``<NA>`` is null.
``"bool"``
    ``bool``, ``boolean`` and ``bool[pyarrow]``.
``"codes"``
    Any column factorised to dense ``int64`` codes (``-1`` and null for missing);
    ``uniques`` maps codes back. Codes are local to one batch.

Examples
--------
>>> import pandas as pd
>>> arrays = to_numpy(pd.Series([1, None, 3], dtype="Int64"), "int64")
>>> arrays.values[[0, 2]].tolist(), arrays.null.tolist()
([1, 3], [False, True, False])

:func:`etl.kernels.from_numpy` goes the other way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api import types as ptypes

from etl.errors import SchemaError
from etl.kernels._numba import jit

__all__ = ["Arrays", "KINDS", "logical_kind", "string_buffers", "to_numpy", "utc_ns"]

KINDS = {
    "int64": np.dtype(np.int64),
    "uint64": np.dtype(np.uint64),
    "float64": np.dtype(np.float64),
    "bool": np.dtype(np.bool_),
    "codes": np.dtype(np.int64),
}

_ACCEPTS = {
    "int64": {"int", "uint", "datetime", "timedelta"},
    "uint64": {"int", "uint"},
    "float64": {"float", "int", "uint"},
    "bool": {"bool"},
}

_OBJECT_KINDS = {"string": "string", "bytes": "bytes", "integer": "int", "boolean": "bool",
                 "floating": "float", "mixed-integer-float": "float", "empty": "empty"}


@dataclass(frozen=True)
class Arrays:
    """One column as numpy: ``values``, ``null`` mask (or ``None``) and code ``uniques``."""

    values: np.ndarray
    null: np.ndarray | None
    uniques: pd.Index | None = None


def logical_kind(column: pd.Series) -> str:
    """Name the logical type of a column, whatever its backing.

    Returns one of ``int``, ``uint``, ``float``, ``bool``, ``datetime``,
    ``timedelta``, ``string``, ``bytes``, ``category``, ``empty`` (an all-null
    object column) or ``other``.

    Examples
    --------
    >>> [logical_kind(pd.Series([1], dtype=d)) for d in ("int64", "Int64", "int64[pyarrow]")]
    ['int', 'int', 'int']
    >>> logical_kind(pd.Series(["a"], dtype=object)), logical_kind(pd.Series(["a"]))
    ('string', 'string')
    """
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if ptypes.is_bool_dtype(dtype):
        return "bool"
    if ptypes.is_unsigned_integer_dtype(dtype):
        return "uint"
    if ptypes.is_integer_dtype(dtype):
        return "int"
    if ptypes.is_float_dtype(dtype):
        return "float"
    if ptypes.is_datetime64_any_dtype(dtype):
        return "datetime"
    if ptypes.is_timedelta64_dtype(dtype) or _is_arrow(dtype, pa.types.is_duration):
        return "timedelta"
    if dtype == object:
        return _OBJECT_KINDS.get(pd.api.types.infer_dtype(column, skipna=True), "other")
    if ptypes.is_string_dtype(dtype) or _is_arrow(dtype, pa.types.is_string):
        return "string"
    return "other"


def _is_arrow(dtype, predicate) -> bool:
    return isinstance(dtype, pd.ArrowDtype) and predicate(dtype.pyarrow_dtype)


def _null_mask(column: pd.Series) -> np.ndarray | None:
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iubf":
        return None
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "mM":  # NaT is int64's minimum
        if not _contains(np.ascontiguousarray(column.to_numpy()).view(np.int64), _NAT):
            return None
    null = np.ascontiguousarray(column.isna().to_numpy(dtype=bool))
    return null if null.any() else None


_NAT = np.iinfo(np.int64).min


@jit
def _contains(values, value):
    for i in range(values.size):
        if values[i] == value:
            return True
    return False


def to_numpy(column: pd.Series, kind: str) -> Arrays:
    """Convert a column to a contiguous numpy array of ``kind`` plus a null mask.

    Parameters
    ----------
    column : pandas.Series
        Any supported backing: numpy, masked (``Int64``), Arrow, categorical.
    kind : {"int64", "uint64", "float64", "bool", "codes"}
        What the kernel receives.

    Returns
    -------
    Arrays

    Raises
    ------
    SchemaError
        The column's logical type cannot become ``kind`` (names the column).

    Examples
    --------
    >>> ts = pd.Series(pd.to_datetime(["1970-01-01 01:00"]).tz_localize("Europe/Paris"))
    >>> to_numpy(ts, "int64").values.tolist()
    [0]
    >>> codes = to_numpy(pd.Series(["b", None, "b"]), "codes")
    >>> codes.values.tolist(), codes.null.tolist(), list(codes.uniques)
    ([0, -1, 0], [False, True, False], ['b'])
    """
    if kind == "codes":
        return _codes(column)
    found = logical_kind(column)
    if found == "empty":  # an object column of nulls only: any kind fits
        found = {"int64": "int", "uint64": "uint", "float64": "float"}.get(kind, kind)
    if kind not in _ACCEPTS or found not in _ACCEPTS[kind]:
        raise SchemaError(
            f"column {column.name!r}: a kernel input of kind {kind!r} needs one of "
            f"{sorted(_ACCEPTS.get(kind, ()))}, found {found} ({column.dtype}); "
            "cast the column or declare another kind",
            column=column.name,
        )
    if found == "datetime":
        return utc_ns(column)
    if found == "timedelta":
        return _timedelta_ns(column)
    null = _null_mask(column)
    target = KINDS[kind]
    if null is None and isinstance(column.dtype, np.dtype):
        values = np.asarray(column.to_numpy(), dtype=target)
    else:
        # the fill must be a value of the column's own type: pyarrow refuses 0 for a boolean column
        fill = np.nan if target.kind == "f" else False if target.kind == "b" else 0
        values = column.to_numpy(dtype=target, na_value=fill)
    _check_range(column, values, kind, found)
    return Arrays(np.ascontiguousarray(values), null)


def _check_range(column: pd.Series, values: np.ndarray, kind: str, found: str) -> None:
    if kind == "int64" and found == "uint" and column.max() > np.iinfo(np.int64).max:
        raise SchemaError(f"column {column.name!r}: uint64 values above 2**63-1 do not fit "
                          "a kernel input of kind 'int64'; declare 'uint64'", column=column.name)
    if kind == "uint64" and found == "int" and len(values) and column.min() < 0:
        raise SchemaError(f"column {column.name!r}: negative values do not fit a kernel "
                          "input of kind 'uint64'; declare 'int64'", column=column.name)


def _codes(column: pd.Series) -> Arrays:
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy().astype(np.int64)
        uniques = column.cat.categories
    else:
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        codes = codes.astype(np.int64, copy=False)
    null = codes < 0
    return Arrays(np.ascontiguousarray(codes), null if null.any() else None, uniques)


def utc_ns(column: pd.Series) -> Arrays:
    """Timestamps as int64 nanoseconds since the epoch in UTC (naive = UTC).

    Examples
    --------
    >>> utc_ns(pd.Series(pd.to_datetime(["1970-01-01 00:00:01", None]))).null.tolist()
    [False, True]
    """
    dtype = column.dtype
    if isinstance(dtype, pd.ArrowDtype) and pa.types.is_date(dtype.pyarrow_dtype):
        return _arrow_dates_ns(column)
    if isinstance(dtype, pd.ArrowDtype):
        tz = getattr(dtype.pyarrow_dtype, "tz", None)
        column = column.astype(pd.DatetimeTZDtype("ns", tz) if tz else "datetime64[ns]")
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    try:
        if column.dtype != "datetime64[ns]":
            column = column.dt.as_unit("ns")
        values = column.to_numpy().view(np.int64)
    except (OverflowError, pd.errors.OutOfBoundsDatetime) as exc:
        raise SchemaError(f"column {column.name!r}: timestamps outside 1677-2262 do not fit "
                          "int64 nanoseconds", column=column.name) from exc
    return Arrays(np.ascontiguousarray(values), _null_mask(column))


def _arrow_dates_ns(column: pd.Series) -> Arrays:
    """Arrow ``date32``/``date64`` straight to int64 nanoseconds (pandas' own cast goes through objects)."""
    arr = column.array._pa_array if hasattr(column.array, "_pa_array") else pa.array(column)
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    per_unit = 86_400 * 10**9 if pa.types.is_date32(arr.type) else 10**6
    raw = arr.cast(pa.int32() if pa.types.is_date32(arr.type) else pa.int64())
    values = raw.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64) * per_unit
    null = raw.is_null().to_numpy(zero_copy_only=False) if raw.null_count else None
    return Arrays(np.ascontiguousarray(values), null)


def _timedelta_ns(column: pd.Series) -> Arrays:
    if isinstance(column.dtype, pd.ArrowDtype):
        column = column.astype("timedelta64[ns]")
    values = column.dt.as_unit("ns").to_numpy().view(np.int64)
    return Arrays(np.ascontiguousarray(values), _null_mask(column))


def string_buffers(column: pd.Series, binary: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """UTF-8 bytes of a string column as Arrow buffers: ``(offsets, data, null)``.

    Row ``i`` is ``data[offsets[i]:offsets[i + 1]]``.

    Examples
    --------
    >>> offsets, data, null = string_buffers(pd.Series(["ab", None, "é"]))
    >>> offsets.tolist(), bytes(data).decode(), null.tolist()
    ([0, 2, 2, 4], 'abé', [False, True, False])
    """
    target = pa.large_binary() if binary else pa.large_string()
    try:
        if column.dtype == object:
            arr = pa.array(column.to_numpy(), type=target, from_pandas=True)
        else:
            arr = pa.array(column).cast(target)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SchemaError(f"column {column.name!r}: expected strings, found {exc}",
                          column=column.name) from exc
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    null = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
    return np.ascontiguousarray(offsets), data, null
