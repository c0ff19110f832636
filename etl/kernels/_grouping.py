"""Make every group contiguous: group codes, a stable sort permutation and offsets.

Rows are bucketed by exact group (a counting sort on factorised keys, so no
hash collision can merge two keys), then each group is put in ``order_by``
order (nulls first, ties in their original order). Groups already in order
are left alone, so time-ordered input costs one linear pass.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"k": ["b", "a", "b"], "t": [2, 1, 1]})
>>> perm, offsets = group_layout(df, ["k"], "t")
>>> perm.tolist(), offsets.tolist()
([2, 0, 1], [0, 2, 3])
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.errors import SchemaError
from etl.kernels._keys import order_key
from etl.kernels._numba import jit

__all__ = ["group_codes", "group_layout", "warm_up_grouping"]


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
def _in_order(perm, start, end, key, valid):
    for i in range(start + 1, end):
        a, b = perm[i - 1], perm[i]
        if valid[a] and (not valid[b] or key[a] > key[b]):
            return False
    return True


@jit
def _sort_groups(perm, offsets, key, valid):
    for g in range(offsets.size - 1):
        start, end = offsets[g], offsets[g + 1]
        if _in_order(perm, start, end, key, valid):
            continue
        segment = perm[start:end].copy()
        nulls = segment[~valid[segment]]
        present = segment[valid[segment]]
        present = present[np.argsort(key[present], kind="mergesort")]
        perm[start:start + nulls.size] = nulls
        perm[start + nulls.size:end] = present


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
    codes = None
    for name in by:
        part, uniques = pd.factorize(df[name], use_na_sentinel=False)
        part = part.astype(np.int64, copy=False)
        codes = part if codes is None else codes * len(uniques) + part
        if codes is not part:
            codes, _ = pd.factorize(codes)
    ngroups = int(codes.max()) + 1
    return np.ascontiguousarray(codes, dtype=np.int64), ngroups


def group_layout(df: pd.DataFrame, by: list[str], order_by: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Permutation putting each group's rows together, in ``order_by`` order, and group offsets.

    Group ``g`` is ``perm[offsets[g]:offsets[g + 1]]``.

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
    if order_by is not None:
        if order_by not in df.columns:
            raise SchemaError(f"order_by column {order_by!r} not found; the frame has "
                              f"{list(df.columns)}", column=order_by)
        key, valid = order_key(df[order_by])
        _sort_groups(perm, offsets, np.ascontiguousarray(key), np.ascontiguousarray(valid))
    return perm, offsets


def warm_up_grouping() -> None:
    """Load the grouping helpers' machine code now rather than in the first task."""
    group_layout(pd.DataFrame({"k": [1, 1], "t": [2, 1]}), ["k"], "t")
