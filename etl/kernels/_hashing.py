"""Deterministic 64-bit row hashes and order-independent batch fingerprints.

The hash of a row depends only on the *logical* values of its columns, in
order, never on the pandas backing, the process, the machine or the run:

* integers of any width and backing hash alike (``int64``, ``Int64``,
  ``int64[pyarrow]``, ``uint64`` below 2**63);
* strings hash their UTF-8 bytes (``object``, ``str``, ``string[pyarrow]``,
  categoricals of strings);
* floats hash their IEEE bits with ``-0.0`` folded into ``0.0`` and every NaN
  into one canonical NaN; ``float32`` widens to ``float64``;
* timestamps hash as UTC nanoseconds (naive timestamps are taken as UTC), so
  units and time zones do not matter; durations as nanoseconds;
* a null hashes to one fixed value whatever the column type, distinct from
  NaN and (up to 64-bit collisions) from every real value;
* each logical type carries its own tag: ``1``, ``1.0``, ``True`` and ``"1"``
  hash differently.

Column hashes are finalised with MurmurHash3's ``fmix64`` and folded left to
right, so ``(a, b)`` and ``(b, a)`` differ.

Examples
--------
>>> import pandas as pd
>>> a = pd.DataFrame({"k": [1, None]}, dtype="Int64")
>>> b = pd.DataFrame({"k": [1, None]}, dtype="int64[pyarrow]")
>>> bool((hash_rows(a, ["k"]) == hash_rows(b, ["k"])).all())
True
>>> fingerprint_hex(a, ["k"]) == fingerprint_hex(a.iloc[::-1], ["k"])
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.errors import SchemaError
from etl.kernels._columns import logical_kind, string_buffers, to_numpy, utc_ns
from etl.kernels._numba import jit

__all__ = ["fingerprint", "fingerprint_hex", "hash_rows"]

_U = np.uint64
SEED = _U(0x243F6A8885A308D3)
NULL_HASH = _U(0x13198A2E03707344)
GOLDEN = _U(0x9E3779B97F4A7C15)
_M1 = _U(0xFF51AFD7ED558CCD)
_M2 = _U(0xC4CEB9FE1A85EC53)
_P1 = _U(0x87C37B91114253D5)
_P2 = _U(0x4CF5AD432745937F)
_CANON_NAN = _U(0x7FF8000000000000)
_HIGH_BIT = _U(0x8000000000000000)
_S33, _S31, _S33L, _S8 = _U(33), _U(31), _U(64 - 31), _U(8)

TAGS = {
    "int": _U(0xA4093822299F31D0), "biguint": _U(0x082EFA98EC4E6C89),
    "float": _U(0x452821E638D01377), "bool": _U(0xBE5466CF34E90C6C),
    "datetime": _U(0xC0AC29B7C97C50DD), "timedelta": _U(0x3F84D5B5B5470917),
    "string": _U(0x9216D5D98979FB1B), "bytes": _U(0xD1310BA698DFB5AC),
}


@jit
def fmix64(k):
    """MurmurHash3's 64-bit finaliser: a bijective avalanche mix."""
    k ^= k >> _S33
    k *= _M1
    k ^= k >> _S33
    k *= _M2
    k ^= k >> _S33
    return k


@jit
def _fold(h, i, x, fold):
    h[i] = fmix64(h[i] * GOLDEN + x) if fold else x


@jit
def _absorb_bits(h, bits, null, tag, is_uint, fold):
    has_null = null.size > 0
    for i in range(bits.size):
        if has_null and null[i]:
            x = NULL_HASH
        else:
            v = bits[i]
            t = TAGS_BIGUINT if is_uint and v >= _HIGH_BIT else tag
            x = fmix64(v ^ t)
        _fold(h, i, x, fold)


TAGS_BIGUINT = TAGS["biguint"]


@jit
def _absorb_float(h, values, null, fold):
    bits = values.view(np.uint64)
    has_null = null.size > 0
    tag = TAGS_FLOAT
    for i in range(values.size):
        if has_null and null[i]:
            x = NULL_HASH
        else:
            v = values[i]
            b = _CANON_NAN if v != v else (_U(0) if v == 0.0 else bits[i])
            x = fmix64(b ^ tag)
        _fold(h, i, x, fold)


TAGS_FLOAT = TAGS["float"]


@jit
def _bytes_hash(data, start, end, seed):
    acc = seed ^ (_U(end - start) * _P2)
    j = start
    while j + 8 <= end:
        w = _U(0)
        for b in range(8):
            w |= _U(data[j + b]) << (_S8 * _U(b))
        w *= _P1
        acc ^= (w << _S31) | (w >> _S33L)
        acc = ((acc << _S31) | (acc >> _S33L)) * _P2
        j += 8
    w = _U(0)
    shift = _U(0)
    while j < end:
        w |= _U(data[j]) << shift
        shift += _S8
        j += 1
    acc ^= w * _P1
    return fmix64(acc)


@jit
def _absorb_strings(h, offsets, data, null, seed, fold):
    has_null = null.size > 0
    for i in range(offsets.size - 1):
        if has_null and null[i]:
            x = NULL_HASH
        else:
            x = _bytes_hash(data, offsets[i], offsets[i + 1], seed)
        _fold(h, i, x, fold)


@jit
def _absorb_codes(h, codes, category_hashes):
    for i in range(codes.size):
        c = codes[i]
        x = NULL_HASH if c < 0 else category_hashes[c]
        h[i] = fmix64(h[i] * GOLDEN + x)


_NO_NULLS = np.zeros(0, dtype=np.bool_)


def _mask(null: np.ndarray | None) -> np.ndarray:
    return _NO_NULLS if null is None else null


def _absorb(h: np.ndarray, column: pd.Series, fold: bool = True) -> None:
    kind = logical_kind(column)
    if kind == "category":
        categories = pd.Series(column.cat.categories)
        category_hashes = np.empty(len(categories), dtype=np.uint64)
        _absorb(category_hashes, categories, fold=False)
        codes = column.cat.codes.to_numpy().astype(np.int64)
        _absorb_codes(h, codes, category_hashes)
    elif kind in ("string", "bytes"):
        offsets, data, null = string_buffers(column, binary=kind == "bytes")
        _absorb_strings(h, offsets, data, _mask(null), TAGS[kind], fold)
    elif kind == "float":
        arrays = to_numpy(column, "float64")
        _absorb_float(h, arrays.values, _mask(arrays.null), fold)
    elif kind in ("int", "uint", "bool", "datetime", "timedelta", "empty"):
        bits, null = _integer_bits(column, kind)
        tag = TAGS["int" if kind in ("uint", "empty") else kind]
        _absorb_bits(h, bits, _mask(null), tag, kind == "uint", fold)
    else:
        raise SchemaError(f"column {column.name!r}: cannot hash values of type {column.dtype} "
                          "(supported: integers, floats, booleans, strings, bytes, timestamps, "
                          "durations, categoricals); cast it first", column=column.name)


def _integer_bits(column: pd.Series, kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    if kind == "empty":
        return np.zeros(len(column), np.uint64), np.ones(len(column), np.bool_)
    if kind == "datetime":
        arrays = utc_ns(column)
    elif kind == "bool":
        arrays = to_numpy(column, "bool")
        return arrays.values.astype(np.uint64), arrays.null
    else:
        arrays = to_numpy(column, "uint64" if kind == "uint" else "int64")
    return arrays.values.view(np.uint64), arrays.null


def hash_rows(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Hash every row of ``df`` over ``columns`` to a deterministic ``uint64``.

    Parameters
    ----------
    df : pandas.DataFrame
        The batch.
    columns : list of str
        Columns to hash, in order; order matters.

    Returns
    -------
    numpy.ndarray
        ``uint64``, one hash per row, in row order.

    Raises
    ------
    SchemaError
        A column is missing or of a type that cannot be hashed.

    Examples
    --------
    >>> df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    >>> h = hash_rows(df, ["a", "b"])
    >>> h.dtype.name, bool(h[0] != h[1]), bool((h != hash_rows(df, ["b", "a"])).all())
    ('uint64', True, True)
    """
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"cannot hash rows: columns {missing} not found; the frame has "
                          f"{list(df.columns)}", column=missing[0])
    h = np.full(len(df), SEED, dtype=np.uint64)
    for name in columns:
        _absorb(h, df[name])
    return h


def fingerprint(df: pd.DataFrame, columns: list[str]) -> int:
    """Order-independent content fingerprint: the sum of the row hashes mod 2**64.

    Equal multisets of rows give equal fingerprints, and fingerprints of
    disjoint batches add up (mod 2**64) to the fingerprint of their union.

    Returns
    -------
    int
        In ``[0, 2**64)``; ``0`` for an empty batch.

    Examples
    --------
    >>> df = pd.DataFrame({"a": [1, 2, 3]})
    >>> fingerprint(df, ["a"]) == fingerprint(df.sample(frac=1, random_state=0), ["a"])
    True
    >>> total = fingerprint(df.iloc[:1], ["a"]) + fingerprint(df.iloc[1:], ["a"])
    >>> total % 2**64 == fingerprint(df, ["a"])
    True
    """
    return int(np.add.reduce(hash_rows(df, columns), dtype=np.uint64))


def fingerprint_hex(df: pd.DataFrame, columns: list[str]) -> str:
    """:func:`fingerprint` as 16 lowercase hex characters.

    Examples
    --------
    >>> fingerprint_hex(pd.DataFrame({"a": []}, dtype="int64"), ["a"])
    '0000000000000000'
    """
    return f"{fingerprint(df, columns):016x}"
