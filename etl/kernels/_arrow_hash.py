"""Row hashes and fingerprints straight from Arrow tables, as the framework fingerprints its data.

The same 64-bit row hash as :func:`etl.kernels.hash_rows` (same tags, same
mixing, same numba kernels), read from Arrow buffers instead of pandas columns:
no conversion, and types are taken from the Arrow type, so an integer column
with nulls hashes as integers whatever pandas would have made of it.

One deliberate difference: in a floating column, NaN hashes like null. pandas
cannot tell them apart, and a frame going to Arrow turns NaN into null, so a
fingerprint must not depend on which of the two a value happened to be.

This is what the runner records in every commit (the batch fingerprint and
the commit's fingerprint delta) and what ``etl verify`` recomputes from the
table, so the two can be compared.

Examples
--------
>>> import pyarrow as pa
>>> t = pa.table({"k": pa.array([1, None], pa.int64()), "v": [1.5, float("nan")]})
>>> u = pa.table({"k": pa.array([1, None], pa.int32()), "v": [1.5, None]})
>>> bool((hash_table(t, ["k", "v"]) == hash_table(u, ["k", "v"])).all())
True
>>> fingerprint_table(t, ["k", "v"]) == fingerprint_table(t.take([1, 0]), ["k", "v"])
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from etl.errors import SchemaError
from etl.kernels._hashing import SEED, TAGS, _absorb, _absorb_bits, _absorb_float, _absorb_strings, _mask

__all__ = ["fingerprint_table", "hash_table"]

_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def hash_table(table: pa.Table | pa.RecordBatch, columns: list[str]) -> np.ndarray:
    """Hash every row of an Arrow table over ``columns`` to a deterministic ``uint64``.

    Parameters
    ----------
    table : pyarrow.Table or pyarrow.RecordBatch
    columns : list of str
        Columns to hash, in order; order matters.

    Returns
    -------
    numpy.ndarray
        ``uint64``, one hash per row.

    Raises
    ------
    SchemaError
        A column is missing, or of a type that cannot be hashed (e.g. nested types).

    Examples
    --------
    >>> import pyarrow as pa
    >>> h = hash_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), ["a", "b"])
    >>> h.dtype.name, bool(h[0] != h[1])
    ('uint64', True)
    """
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise SchemaError(f"cannot hash rows: columns {missing} not found; the table has "
                          f"{table.column_names}", column=missing[0])
    h = np.full(table.num_rows, SEED, dtype=np.uint64)
    for name in columns:
        column = table.column(name)
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        _absorb_array(h, column, name)
    return h


def fingerprint_table(table: pa.Table | pa.RecordBatch, columns: list[str]) -> int:
    """Order-independent fingerprint of an Arrow table: its row hashes summed mod 2**64.

    Examples
    --------
    >>> import pyarrow as pa
    >>> t = pa.table({"a": [1, 2, 3]})
    >>> (fingerprint_table(t.slice(0, 1), ["a"]) + fingerprint_table(t.slice(1), ["a"])) % 2**64 == \\
    ...     fingerprint_table(t, ["a"])
    True
    """
    if table.num_rows == 0:
        return 0
    return int(np.add.reduce(hash_table(table, columns), dtype=np.uint64))


def _null(arr: pa.Array) -> np.ndarray | None:
    return arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None


def _filled(arr: pa.Array, typ: pa.DataType) -> np.ndarray:
    arr = arr.cast(typ)
    if arr.null_count:
        arr = arr.fill_null(pa.scalar(0, typ))
    return np.ascontiguousarray(arr.to_numpy(zero_copy_only=False))


def _absorb_array(h: np.ndarray, arr: pa.Array, name: str) -> None:
    t = arr.type
    if pa.types.is_dictionary(t):
        arr, t = arr.dictionary_decode(), t.value_type
    if pa.types.is_null(t):
        _absorb_bits(h, np.zeros(len(arr), np.uint64), np.ones(len(arr), np.bool_), TAGS["int"], False, True)
    elif pa.types.is_signed_integer(t):
        bits = _filled(arr, pa.int64()).view(np.uint64)
        _absorb_bits(h, bits, _mask(_null(arr)), TAGS["int"], False, True)
    elif pa.types.is_unsigned_integer(t):
        _absorb_bits(h, _filled(arr, pa.uint64()), _mask(_null(arr)), TAGS["int"], True, True)
    elif pa.types.is_floating(t):
        values = _filled(arr, pa.float64())
        null = np.isnan(values)  # NaN hashes like null (see the module docstring)
        if arr.null_count:
            null |= _null(arr)
        _absorb_float(h, values, _mask(null if null.any() else None), True)
    elif pa.types.is_boolean(t):
        _absorb_bits(h, _filled(arr, pa.uint8()).astype(np.uint64), _mask(_null(arr)), TAGS["bool"], False, True)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        _absorb_buffers(h, arr.cast(pa.large_string()), TAGS["string"])
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        _absorb_buffers(h, arr.cast(pa.large_binary()), TAGS["bytes"])
    elif pa.types.is_date32(t):
        days = _filled(arr, pa.int32()).astype(np.int64)
        _absorb_bits(h, (days * 86_400 * 10**9).view(np.uint64), _mask(_null(arr)), TAGS["datetime"], False, True)
    elif pa.types.is_date64(t):
        ms = _filled(arr, pa.int64())
        _absorb_bits(h, (ms * 10**6).view(np.uint64), _mask(_null(arr)), TAGS["datetime"], False, True)
    elif pa.types.is_timestamp(t) or pa.types.is_duration(t):
        tag = TAGS["datetime"] if pa.types.is_timestamp(t) else TAGS["timedelta"]
        raw = _filled(arr.cast(pa.int64()), pa.int64())
        factor = _NS[t.unit]
        if factor != 1 and len(raw) and np.abs(raw).max() > np.iinfo(np.int64).max // factor:
            raise SchemaError(f"column {name!r}: timestamps outside 1677-2262 do not fit int64 nanoseconds",
                              column=name)
        _absorb_bits(h, (raw * factor).view(np.uint64), _mask(_null(arr)), tag, False, True)
    else:  # anything else the pandas hashing knows (it raises a clear error otherwise)
        _absorb(h, pd.Series(arr.to_pandas(types_mapper=pd.ArrowDtype), name=name))


def _absorb_buffers(h: np.ndarray, arr: pa.Array, tag) -> None:
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    _absorb_strings(h, np.ascontiguousarray(offsets), data, _mask(_null(arr)), tag, True)
