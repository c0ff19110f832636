"""Key-hash hot paths for MERGE: latest row per key, duplicate keys, key matching.

All three take ``uint64`` key hashes (from :func:`etl.kernels.hash_rows`) and
run in one pass over open-addressing hash tables compiled with numba, so
their cost grows with the number of rows, not with a sort.

Examples
--------
>>> import numpy as np
>>> keys = np.array([7, 9, 7, 7], dtype=np.uint64)
>>> latest_per_key(keys, np.array([3, 1, 5, 5])).tolist()
[1, 3]
>>> duplicate_keys(keys).tolist()
[7]
>>> match_keys(keys, np.array([9], dtype=np.uint64)).tolist()
[False, True, False, False]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.errors import SchemaError
from etl.kernels._columns import logical_kind, to_numpy, utc_ns
from etl.kernels._hashing import fmix64
from etl.kernels._numba import jit

__all__ = ["duplicate_keys", "latest_per_code", "latest_per_key", "match_keys", "order_key"]

_SALT = np.uint64(0x6A09E667F3BCC908)
_FLIP = np.int64(0x7FFFFFFFFFFFFFFF)


@jit(inline=True)
def _slot(table, key, mask):
    """Row of ``table`` holding ``key``, or the empty row (``table[j, 1] < 0``) for it.

    Rows are ``(key, payload, order)``; payload ``-1`` marks an empty row.
    """
    j = np.int64(fmix64(np.uint64(key) ^ _SALT) & np.uint64(mask))
    while table[j, 1] >= 0 and table[j, 0] != key:
        j = (j + 1) & mask
    return j


@jit
def _new_table(size):
    table = np.zeros((size, 3), np.int64)
    table[:, 1] = -1
    return table


@jit
def _grow(table):
    bigger = _new_table(2 * table.shape[0])
    for j in range(table.shape[0]):
        if table[j, 1] >= 0:
            bigger[_slot(bigger, table[j, 0], bigger.shape[0] - 1)] = table[j]
    return bigger


@jit
def _estimate_distinct(keys):
    """Distinct keys, estimated from those whose mixed hash falls below a threshold."""
    if keys.size <= 4096:
        return keys.size
    fraction = 4096.0 / keys.size
    threshold = np.uint64(fraction * 1.8446744073709552e19)
    sample = [np.uint64(0) for _ in range(0)]
    for i in range(keys.size):
        h = fmix64(keys[i] ^ _SALT)
        if h < threshold:
            sample.append(h)
    return int(np.unique(np.array(sample)).size / fraction) + 1


@jit
def _table_for(keys):
    size = 1024
    target = 1.5 * min(keys.size, 1.1 * _estimate_distinct(keys))
    while size < target:
        size *= 2
    return _new_table(size)


@jit
def _latest(keys, order, valid):
    table = _table_for(keys)
    k64 = keys.view(np.int64)
    count = 0
    for i in range(keys.size):
        j = _slot(table, k64[i], table.shape[0] - 1)
        packed = (i << 1) | np.int64(valid[i])  # position and validity in one slot
        if table[j, 1] < 0:
            table[j, 0], table[j, 1], table[j, 2] = k64[i], packed, order[i]
            count += 1
            if 10 * count > 7 * table.shape[0]:
                table = _grow(table)
        elif _wins(valid[i], order[i], table[j, 1] & 1, table[j, 2]):
            table[j, 1], table[j, 2] = packed, order[i]
    keep = np.zeros(keys.size, np.bool_)
    for j in range(table.shape[0]):
        if table[j, 1] >= 0:
            keep[table[j, 1] >> 1] = True
    return np.flatnonzero(keep)


@jit(inline=True)
def _wins(valid, order, best_valid, best_order):
    """Later row wins unless it is null and the best is not, or it orders lower."""
    if valid != best_valid:
        return valid
    return (not valid) or order >= best_order


@jit
def _latest_by_code(codes, ngroups, order, valid):
    best = np.full(ngroups, -1, np.int64)
    best_order, best_valid = np.empty(ngroups, np.int64), np.empty(ngroups, np.bool_)
    for i in range(codes.size):  # the best's order is kept per code: no random reads of order
        c = codes[i]
        if best[c] < 0 or _wins(valid[i], order[i], best_valid[c], best_order[c]):
            best[c], best_order[c], best_valid[c] = i, order[i], valid[i]
    keep = np.zeros(codes.size, np.bool_)
    for g in range(ngroups):
        if best[g] >= 0:
            keep[best[g]] = True
    return np.flatnonzero(keep)


def latest_per_code(codes: np.ndarray, ngroups: int, order) -> np.ndarray:
    """:func:`latest_per_key` for exact dense group codes (``0 <= code < ngroups``).

    Same rule: greatest ``order`` wins, ties go to the last position, nulls lose.

    Examples
    --------
    >>> latest_per_code(np.array([0, 1, 0]), 2, np.array([5, 1, 5])).tolist()
    [1, 2]
    """
    key, valid = order_key(order)
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    return _latest_by_code(codes, ngroups, np.ascontiguousarray(key), np.ascontiguousarray(valid))


@jit
def _duplicates(keys):
    table = _table_for(keys)
    k64 = keys.view(np.int64)
    count = 0
    for i in range(keys.size):
        j = _slot(table, k64[i], table.shape[0] - 1)
        if table[j, 1] < 0:
            table[j, 0], table[j, 1], table[j, 2] = k64[i], 0, 0
            count += 1
            if 10 * count > 7 * table.shape[0]:
                table = _grow(table)
                j = _slot(table, k64[i], table.shape[0] - 1)
        table[j, 2] += 1
    return table[table[:, 2] > 1, 0]


@jit
def _match(left, right):
    """``left`` values found in ``right`` (both uint64; ``right`` sorted ascending).

    A bit set of ``right``'s hashes (about 16 bits per value, a few MB at most,
    so it stays in cache) answers most probes; the few it lets through are
    confirmed by binary search in ``right``. Unlike a hash table of
    ``right``, nothing large is built or probed at random.
    """
    log2 = 16
    while log2 < 27 and (1 << log2) < 16 * right.size:
        log2 += 1
    mask = np.uint64((1 << log2) - 1)
    words = np.zeros((1 << log2) >> 6, np.uint64)
    one = np.uint64(1)
    for i in range(right.size):
        b = fmix64(right[i] ^ _SALT) & mask
        words[b >> np.uint64(6)] |= one << (b & np.uint64(63))
    out = np.zeros(left.size, np.bool_)
    for i in range(left.size):
        v = left[i]
        b = fmix64(v ^ _SALT) & mask
        if words[b >> np.uint64(6)] & (one << (b & np.uint64(63))):
            lo, hi = 0, right.size
            while lo < hi:
                mid = (lo + hi) >> 1
                if right[mid] < v:
                    lo = mid + 1
                else:
                    hi = mid
            out[i] = lo < right.size and right[lo] == v
    return out


def _hashes(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype != np.uint64:
        raise SchemaError(f"{name} must be a uint64 array of key hashes (see hash_rows), "
                          f"found {arr.dtype}", column=name)
    return np.ascontiguousarray(arr)


def order_key(order) -> tuple[np.ndarray, np.ndarray]:
    """Turn an ordering column into ``(int64 sort key, valid mask)``.

    Integers, floats, booleans, timestamps and durations map to ``int64`` keys
    that sort like the values (``-0.0`` equals ``0.0``); NaN, NaT and nulls are
    *not valid* and sort below every value.

    Examples
    --------
    >>> key, valid = order_key(np.array([1.5, np.nan, -2.0]))
    >>> bool(key[0] > key[2]), valid.tolist()
    (True, [True, False, True])
    """
    if isinstance(order, (pd.Series, pd.Index, pd.api.extensions.ExtensionArray)):
        return _order_from_pandas(pd.Series(order))
    arr = np.asarray(order)
    if arr.dtype.kind in "Mm":
        ints = arr.view(np.int64)
        return ints, ints != np.iinfo(np.int64).min
    if arr.dtype.kind == "f":
        bits = (arr.astype(np.float64) + 0.0).view(np.int64)
        return np.where(bits < 0, bits ^ _FLIP, bits), ~np.isnan(arr)
    if arr.dtype.kind == "u":
        return (arr.astype(np.uint64) ^ np.uint64(1 << 63)).view(np.int64), np.ones(arr.size, bool)
    if arr.dtype.kind in "ib":
        return arr.astype(np.int64, copy=False), np.ones(arr.size, bool)
    raise SchemaError(f"order must be integers, floats or timestamps, found {arr.dtype}",
                      column="order")


def _order_from_pandas(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    kind = logical_kind(series)
    if kind == "datetime":
        arrays = utc_ns(series)
    elif kind == "float":
        key, valid = order_key(to_numpy(series, "float64").values)
        null = series.isna().to_numpy(dtype=bool)
        return key, valid & ~null
    elif kind in ("int", "uint", "bool", "timedelta"):
        arrays = to_numpy(series, "bool" if kind == "bool" else "int64")
    else:
        raise SchemaError(f"order column {series.name!r} must be numeric or a timestamp, "
                          f"found {series.dtype}", column=series.name)
    key, valid = order_key(arrays.values)
    if arrays.null is not None:
        valid = valid & ~arrays.null
    return key, valid


def latest_per_key(key_hash: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """Positions of the latest row of each key, ascending.

    Parameters
    ----------
    key_hash : numpy.ndarray
        ``uint64`` key hash per row.
    order : numpy.ndarray, pandas.Series or None
        Ordering per row (int64, float64, datetime64, or a nullable column).
        The row with the greatest ``order`` wins; among equal orders the row
        at the **last position** wins. NaN, NaT and nulls sort below every
        value. ``None`` keeps every row (check :func:`duplicate_keys` first).

    Returns
    -------
    numpy.ndarray
        ``int64`` positions, ascending.

    Examples
    --------
    >>> keys = np.array([1, 1, 2], dtype=np.uint64)
    >>> latest_per_key(keys, np.array(["2024-01-02", "NaT", "NaT"], dtype="M8[ns]")).tolist()
    [0, 2]
    >>> latest_per_key(keys, None).tolist()
    [0, 1, 2]
    """
    keys = _hashes(key_hash, "key_hash")
    if order is None:
        return np.arange(keys.size, dtype=np.int64)
    key, valid = order_key(order)
    if key.size != keys.size:
        raise SchemaError(f"order has {key.size} rows but key_hash has {keys.size}",
                          column="order")
    return _latest(keys, np.ascontiguousarray(key), np.ascontiguousarray(valid))


def duplicate_keys(key_hash: np.ndarray) -> np.ndarray:
    """The distinct key hashes that occur more than once, ascending.

    Examples
    --------
    >>> duplicate_keys(np.array([5, 3, 5, 3, 1], dtype=np.uint64)).tolist()
    [3, 5]
    """
    return np.sort(_duplicates(_hashes(key_hash, "key_hash")).view(np.uint64))


def match_keys(left_hash: np.ndarray, right_hash: np.ndarray) -> np.ndarray:
    """Mask over ``left_hash``: ``True`` where the hash occurs in ``right_hash``.

    Equal to ``np.isin(left_hash, right_hash)``, in one pass over each side.

    Examples
    --------
    >>> match_keys(np.array([1, 2], dtype=np.uint64), np.array([2, 2], dtype=np.uint64)).tolist()
    [False, True]
    """
    right = _hashes(right_hash, "right_hash")
    if right.size > 1 and not bool(np.all(right[1:] >= right[:-1])):
        right = np.sort(right)
    return _match(_hashes(left_hash, "left_hash"), right)
