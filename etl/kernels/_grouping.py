"""Make every group contiguous: group codes, a stable sort permutation and offsets.

Rows are bucketed by exact group (a counting sort on factorised keys, so no
hash collision can merge two keys), then each group is put in ``order_by``
order (nulls first, ties in their original order). Groups already in order
are left alone, so time-ordered input costs one linear pass.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"k": ["b", "a", "b"], "t": [2, 1, 1]})
>>> perm, offsets, _ = group_layout(df, ["k"], "t")
>>> perm.tolist(), offsets.tolist()
([2, 0, 1], [0, 2, 3])
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from etl.errors import SchemaError
from etl.kernels._keys import order_key
from etl.kernels._numba import jit

__all__ = ["Layout", "group_codes", "group_layout", "warm_up_grouping"]


@jit
def _bucket(codes, ngroups):
    offsets = np.zeros(ngroups + 1, np.int64)
    for i in range(codes.size):
        offsets[codes[i] + 1] += 1
    for g in range(ngroups):
        offsets[g + 1] += offsets[g]
    cursor = offsets[:-1].copy()
    perm = np.empty(codes.size, np.int64)
    for i in range(codes.size):
        c = codes[i]
        perm[cursor[c]] = i
        cursor[c] += 1
    return perm, offsets


@jit
def _in_order(key, valid, start, end):
    """Whether a group is already in order; an empty ``valid`` means no nulls."""
    if valid.size == 0:
        for i in range(start + 1, end):
            if key[i - 1] > key[i]:
                return False
        return True
    for i in range(start + 1, end):
        if valid[i - 1] and (not valid[i] or key[i - 1] > key[i]):
            return False
    return True


@jit
def _nulls_first(key, valid, perm, start, end, kbuf, pbuf):
    """Stable partition of ``[start, end)``: rows with invalid keys first. Returns their count."""
    at = 0
    for phase in (False, True):
        for i in range(start, end):
            if valid[i] == phase:
                kbuf[at], pbuf[at] = key[i], perm[i]
                at += 1
    nulls = 0
    for i in range(start, end):
        nulls += not valid[i]
    key[start:end], perm[start:end] = kbuf[:end - start], pbuf[:end - start]
    return nulls


@jit
def _merge_sort(key, perm, start, end, kbuf, pbuf):
    """Stable sort of ``key[start:end]`` carrying ``perm``: insertion-sorted runs, then merges."""
    run = 24
    for lo in range(start, end, run):
        for i in range(lo + 1, min(lo + run, end)):
            k, p, j = key[i], perm[i], i - 1
            while j >= lo and key[j] > k:
                key[j + 1], perm[j + 1] = key[j], perm[j]
                j -= 1
            key[j + 1], perm[j + 1] = k, p
    width = run
    while width < end - start:
        for lo in range(start, end, 2 * width):
            mid, hi = min(lo + width, end), min(lo + 2 * width, end)
            if mid >= hi or key[mid - 1] <= key[mid]:
                continue
            i, j, o = lo, mid, 0
            while i < mid or j < hi:
                if j >= hi or (i < mid and key[i] <= key[j]):
                    kbuf[o], pbuf[o] = key[i], perm[i]
                    i += 1
                else:
                    kbuf[o], pbuf[o] = key[j], perm[j]
                    j += 1
                o += 1
            key[lo:hi], perm[lo:hi] = kbuf[:o], pbuf[:o]
        width *= 2


@jit
def _sort_groups(perm, offsets, key, valid):
    """Sort each group of ``perm`` by (valid, key), stably, ``key`` alongside.

    ``key`` and ``valid`` are in ``perm`` order; an empty ``valid`` means no nulls.
    """
    longest = 0
    for g in range(offsets.size - 1):
        longest = max(longest, offsets[g + 1] - offsets[g])
    kbuf, pbuf = np.empty(longest, np.int64), np.empty(longest, np.int64)
    for g in range(offsets.size - 1):
        start, end = offsets[g], offsets[g + 1]
        if _in_order(key, valid, start, end):
            continue
        nulls = _nulls_first(key, valid, perm, start, end, kbuf, pbuf) if valid.size else 0
        _merge_sort(key, perm, start + nulls, end, kbuf, pbuf)


def group_codes(df: pd.DataFrame, by: list[str]) -> tuple[np.ndarray, int]:
    """Dense ``int64`` group codes over ``by`` (nulls form their own group).

    Examples
    --------
    >>> codes, n = group_codes(pd.DataFrame({"a": [1, 1, None], "b": ["x", "x", "y"]}), ["a", "b"])
    >>> codes.tolist(), n
    ([0, 0, 1], 2)
    """
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise SchemaError(f"group key columns {missing} not found; the frame has {list(df.columns)}",
                          column=missing[0])
    if len(df) == 0:
        return np.zeros(0, np.int64), 0
    if len(by) == 1 and df[by[0]].dtype.kind in "iu":
        direct = _dense_integers(df[by[0]].to_numpy())
        if direct is not None:
            return direct
    codes = None
    for name in by:
        part, uniques = pd.factorize(df[name], use_na_sentinel=False)
        part = part.astype(np.int64, copy=False)
        codes = part if codes is None else codes * len(uniques) + part
        if codes is not part:
            codes, _ = pd.factorize(codes)
    ngroups = int(codes.max()) + 1
    return np.ascontiguousarray(codes, dtype=np.int64), ngroups


def _dense_integers(values: np.ndarray):
    """Integer keys spanning a small range are their own codes (minus the minimum)."""
    low, high = int(values.min()), int(values.max())
    if high - low > 2 * values.size + 1024:
        return None
    present = np.zeros(high - low + 1, np.int64)
    shifted = (values - values.dtype.type(low)).astype(np.int64)
    present[shifted] = 1
    renumber = np.cumsum(present) - 1  # skip absent values so codes stay dense
    return np.ascontiguousarray(renumber[shifted]), int(renumber[-1]) + 1


class Layout(NamedTuple):
    """Rows of group ``g`` are ``perm[offsets[g]:offsets[g + 1]]``; ``key`` is the
    ``order_by`` sort key in that order (``None`` without ``order_by``)."""

    perm: np.ndarray
    offsets: np.ndarray
    key: np.ndarray | None


def group_layout(df: pd.DataFrame, by: list[str], order_by: str | None) -> Layout:
    """Permutation putting each group's rows together, in ``order_by`` order, and group offsets.

    Parameters
    ----------
    df : pandas.DataFrame
    by : list of str
        Key columns; every row with equal keys lands in one group.
    order_by : str or None
        Column ordering the rows of a group; NaN, NaT and nulls first, ties in
        their original order. ``None`` keeps the original order.
    """
    codes, ngroups = group_codes(df, by)
    perm, offsets = _bucket(codes, ngroups)
    if order_by is None:
        return Layout(perm, offsets, None)
    if order_by not in df.columns:
        raise SchemaError(f"order_by column {order_by!r} not found; the frame has "
                          f"{list(df.columns)}", column=order_by)
    key, valid = order_key(df[order_by])
    key = key[perm]
    _sort_groups(perm, offsets, key, valid[perm] if not valid.all() else valid[:0])
    return Layout(perm, offsets, key)


def warm_up_grouping() -> None:
    """Load the grouping helpers' machine code now rather than in the first task."""
    group_layout(pd.DataFrame({"k": [1, 1], "t": [2, 1]}), ["k"], "t")
