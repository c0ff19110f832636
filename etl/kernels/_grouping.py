"""Make every group contiguous: group slots, a cache-friendly permutation and offsets.

Rows are bucketed by exact group (a counting sort on integer slots: the key
values themselves when they span a small range, factorised codes otherwise, so
no hash collision can merge two keys), then each group is put in ``order_by``
order (nulls first, ties in their original order).

Moving 10M rows straight to their group's place is a random memory access per
row and per column. The layout moves them in two cache-friendly steps instead:
rows first go to one of a few hundred *chunks* of consecutive groups (a few
hundred sequential write streams), then each chunk, small enough for the CPU
cache, is ordered in place. Every column is then moved the same two steps
(:meth:`Layout.to_groups`) and kernel outputs go back the reverse way
(:meth:`Layout.to_rows`). Input that is already grouped and in order (sorted
by key and time) is used as it is: no copy at all.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"k": ["b", "a", "b"], "t": [2, 1, 1]})
>>> layout = group_layout(df, ["k"], "t")
>>> layout.offsets.tolist(), layout.to_groups(np.array([10, 20, 30])).tolist()
([0, 2, 3], [30, 10, 20])
>>> layout.to_rows(np.array([1, 2, 3])).tolist()
[2, 3, 1]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.errors import SchemaError
from etl.kernels._keys import order_key
from etl.kernels._numba import jit

__all__ = ["Layout", "group_codes", "group_layout", "group_slots", "warm_up_grouping"]

ROWS_PER_CHUNK = 1 << 14
"""Rows per chunk of the layout: the working set of one chunk (about 24 bytes a
row) stays in a core's L2 cache."""

_NO_VALID = np.zeros(0, np.bool_)


# -- counting sort on slots, in two steps --------------------------------------------------
@jit
def _histogram(keys, low, nslots):
    """Start of each slot's rows in group order, and whether ``keys`` never decrease."""
    start = np.zeros(nslots + 1, np.int64)
    grouped = True
    prev = low
    for i in range(keys.size):
        k = keys[i]
        start[k - low + 1] += 1
        if k < prev:
            grouped = False
        prev = k
    for s in range(nslots):
        start[s + 1] += start[s]
    return start, grouped


@jit
def _to_chunks(keys, low, cshift, cstart, order, valid, d1, tkey, tslot, tvalid):
    """Step 1: row ``i`` goes to ``d1[i]``, the next free place of its slot's chunk."""
    cursor = cstart[:-1].copy()
    has_order, has_valid = tkey.size > 0, tvalid.size > 0
    for i in range(keys.size):
        s = keys[i] - low
        q = s >> cshift
        d = cursor[q]
        cursor[q] = d + 1
        d1[i] = d
        tslot[d] = s
        if has_order:
            tkey[d] = order[i]
        if has_valid:
            tvalid[d] = valid[i]


@jit
def _in_chunks(cstart, start, cshift, tslot, low, tkey, tvalid, skey, src, in_place):
    """Step 2, one chunk at a time: place rows by slot, then sort each group by key.

    ``src[p]`` is the chunk-order position of the row at group-order position ``p``.
    With ``in_place``, ``src`` is ``tslot`` itself, overwritten chunk by chunk.
    Returns how many groups had to be reordered.
    """
    nslots = start.size - 1
    cursor = start[:-1].copy()
    has_order, has_valid = skey.size > 0, tvalid.size > 0
    widest = 0
    for q in range(cstart.size - 1):
        widest = max(widest, cstart[q + 1] - cstart[q])
    sbuf = np.empty(widest if in_place else 0, tslot.dtype)
    longest = 0
    for s in range(nslots):
        longest = max(longest, start[s + 1] - start[s])
    kbuf = np.empty(longest if has_order else 0, np.int64)
    ibuf = np.empty(longest if has_order else 0, src.dtype)
    counts = np.empty(2 * longest + 1 if has_order else 0, np.int64)
    reordered = 0
    for q in range(cstart.size - 1):
        c0, c1 = cstart[q], cstart[q + 1]
        slots = tslot[c0:c1]
        if in_place:  # the chunk's slots move to a cached buffer before src overwrites them
            sbuf[:c1 - c0] = slots
            slots = sbuf[:c1 - c0]
        for d in range(c0, c1):
            s = slots[d - c0] - low
            p = cursor[s]
            cursor[s] = p + 1
            src[p] = d
            if has_order:
                skey[p] = tkey[d]
        if not has_order:
            continue
        for s in range(q << cshift, min((q + 1) << cshift, nslots)):
            a, b = start[s], start[s + 1]
            if b - a < 2:
                continue
            moved = False
            if has_valid:
                nulls = _nulls_first(skey, src, tvalid, a, b, kbuf, ibuf)
                moved = nulls < 0
                a += abs(nulls)
            if _sort_run(skey, src, a, b, kbuf, ibuf, counts) or moved:
                reordered += 1
    return reordered


@jit
def _nulls_first(key, src, tvalid, a, b, kbuf, ibuf):
    """Stable partition of ``[a, b)``: rows whose ``tvalid[src]`` is false first.

    Returns the number of such rows, negated if any row moved.
    """
    nulls, moved = 0, False
    for p in range(a, b):
        if not tvalid[src[p]]:
            moved = moved or nulls != p - a
            nulls += 1
    if nulls == 0 or not moved:
        return nulls
    at = 0
    for phase in (False, True):
        for p in range(a, b):
            if tvalid[src[p]] == phase:
                kbuf[at], ibuf[at] = key[p], src[p]
                at += 1
    key[a:b], src[a:b] = kbuf[:b - a], ibuf[:b - a]
    return -nulls


@jit
def _insertion_sort(key, idx, lo, hi):
    for i in range(lo + 1, hi):
        k = key[i]
        if key[i - 1] <= k:
            continue
        p, j = idx[i], i - 1
        while j >= lo and key[j] > k:
            key[j + 1], idx[j + 1] = key[j], idx[j]
            j -= 1
        key[j + 1], idx[j + 1] = k, p


@jit
def _merge_sort(key, idx, start, end, kbuf, ibuf):
    """Stable sort of ``key[start:end]`` carrying ``idx``: insertion-sorted runs, then merges."""
    run = 24
    for lo in range(start, end, run):
        _insertion_sort(key, idx, lo, min(lo + run, end))
    width = run
    while width < end - start:
        for lo in range(start, end, 2 * width):
            mid, hi = min(lo + width, end), min(lo + 2 * width, end)
            if mid >= hi or key[mid - 1] <= key[mid]:
                continue
            i, j, o = lo, mid, 0
            while i < mid or j < hi:
                if j >= hi or (i < mid and key[i] <= key[j]):
                    kbuf[o], ibuf[o] = key[i], idx[i]
                    i += 1
                else:
                    kbuf[o], ibuf[o] = key[j], idx[j]
                    j += 1
                o += 1
            key[lo:hi], idx[lo:hi] = kbuf[:o], ibuf[:o]
        width *= 2


@jit
def _sort_run(key, idx, a, b, kbuf, ibuf, counts):
    """Stable sort of ``key[a:b]`` carrying ``idx``; returns whether anything moved.

    Keys are spread over up to ``2 * (b - a)`` buckets by their high bits (a
    counting sort), which leaves a key or two per bucket for one insertion-sort
    pass. If a bucket still holds many keys (clustered or equal keys) the
    buckets are sorted one by one, the large ones by merge sort, so the cost
    stays ``O(m log m)`` whatever the distribution. ``counts`` holds at least
    ``2 * (b - a) + 1`` slots.
    """
    m = b - a
    lo = hi = prev = key[a]
    ordered = True
    for i in range(a + 1, b):
        k = key[i]
        ordered &= prev <= k  # no branch: random keys would mispredict half the time
        prev = k
        lo, hi = min(lo, k), max(hi, k)
    if ordered:
        return False
    if m <= 16:
        _insertion_sort(key, idx, a, b)
        return True
    ulo = np.uint64(lo)
    span = np.uint64(hi) - ulo
    shift = np.uint64(0)
    while (span >> shift) >= np.uint64(2 * m):
        shift += np.uint64(1)
    nb = np.int64(span >> shift) + 1
    counts[:nb + 1] = 0
    for i in range(m):
        k = key[a + i]
        kbuf[i], ibuf[i] = k, idx[a + i]
        counts[np.int64((np.uint64(k) - ulo) >> shift) + 1] += 1
    biggest = 0
    for t in range(nb):
        biggest = max(biggest, counts[t + 1])
        counts[t + 1] += counts[t]
    for i in range(m):
        k = kbuf[i]
        t = np.int64((np.uint64(k) - ulo) >> shift)
        o = counts[t]
        counts[t] = o + 1
        key[a + o], idx[a + o] = k, ibuf[i]
    if biggest <= 16:  # keys only move inside their bucket
        _insertion_sort(key, idx, a, b)
        return True
    begin = 0  # counts[t] is now the end of bucket t
    for t in range(nb):
        end = counts[t]
        if end - begin > 32:
            _merge_sort(key, idx, a + begin, a + end, kbuf, ibuf)
        elif end - begin > 1:
            _insertion_sort(key, idx, a + begin, a + end)
        begin = end
    return True


@jit
def _groups_in_order(start, key, valid):
    """Whether every group of ``key`` (already grouped) is in order, nulls first."""
    has_valid = valid.size > 0
    for s in range(start.size - 1):
        for i in range(start[s] + 1, start[s + 1]):
            if has_valid:
                if valid[i - 1] and (not valid[i] or key[i - 1] > key[i]):
                    return False
            elif key[i - 1] > key[i]:
                return False
    return True


# -- moving columns between row order and group order --------------------------------------
@jit
def _gather(values, d1, src, tmp, out):
    """``out`` in group order from ``values`` in row order (``d1`` empty: rows are in chunk order)."""
    if d1.size:
        for i in range(values.size):
            tmp[d1[i]] = values[i]
        for p in range(out.size):
            out[p] = tmp[src[p]]
    else:
        for p in range(out.size):
            out[p] = values[src[p]]


@jit
def _scatter(values, d1, src, tmp, out):
    """The inverse of :func:`_gather`: ``out`` in row order from ``values`` in group order.

    With ``d1`` (two steps) ``out`` may be ``values`` itself.
    """
    if d1.size:
        for p in range(values.size):
            tmp[src[p]] = values[p]
        for i in range(out.size):
            out[i] = tmp[d1[i]]
    else:
        for p in range(values.size):
            out[src[p]] = values[p]


_BITS = {1: np.dtype(np.uint8), 4: np.dtype(np.int32), 8: np.dtype(np.int64)}


def _bits(values: np.ndarray) -> np.ndarray:
    """An integer view of the same bytes (one compiled loop per item size)."""
    return values.view(_BITS[values.dtype.itemsize])


class Layout:
    """Where each row goes so that groups are contiguous and in ``order_by`` order.

    Attributes
    ----------
    offsets : numpy.ndarray
        ``int64``; rows of group ``g`` are ``offsets[g]:offsets[g + 1]`` in group
        order. Only non-empty groups.
    key : numpy.ndarray or None
        The ``order_by`` sort key (see :func:`etl.kernels._keys.order_key`) in
        group order; ``None`` without ``order_by``.
    identity : bool
        The rows were already grouped and in order: both moves return their input.
    """

    def __init__(self, offsets, key, d1=None, src=None, scratch=None) -> None:
        self.offsets, self.key = offsets, key
        self._d1 = d1 if d1 is not None else np.zeros(0, np.int32)
        self._src = src
        self._tmp = scratch  # int64, one per row: a buffer the layout no longer needs

    @property
    def identity(self) -> bool:
        return self._src is None

    def _scratch(self, values: np.ndarray) -> np.ndarray:
        if not self._d1.size:
            return np.empty(0, values.dtype)
        if self._tmp is None:
            self._tmp = np.empty(self._src.size, np.int64)
        return self._tmp.view(values.dtype)[:values.size]

    def to_groups(self, values: np.ndarray) -> np.ndarray:
        """``values`` (one per row, in row order) in group order; a new array."""
        if self.identity:
            return values
        values = np.ascontiguousarray(values)
        out = np.empty(values.size, values.dtype)
        bits = _bits(values)
        _gather(bits, self._d1, self._src, self._scratch(bits), _bits(out))
        return out

    def to_rows(self, values: np.ndarray, reuse: bool = False) -> np.ndarray:
        """The inverse of :meth:`to_groups`: ``values`` in group order back in row order.

        With ``reuse=True`` the result may overwrite ``values`` (a writable array
        the caller no longer needs) rather than take fresh memory.
        """
        if self.identity:
            return values
        values = np.ascontiguousarray(values)
        reuse = reuse and self._d1.size > 0 and values.flags.writeable  # _scatter reads all first
        out = values if reuse else np.empty(values.size, values.dtype)
        bits = _bits(values)
        _scatter(bits, self._d1, self._src, self._scratch(bits), _bits(out))
        return out


# -- group keys as integer slots -----------------------------------------------------------
def _check_keys(df: pd.DataFrame, by: list[str]) -> None:
    missing = [c for c in by if c not in df.columns]
    if missing:
        raise SchemaError(f"group key columns {missing} not found; the frame has {list(df.columns)}",
                          column=missing[0])


def group_slots(df: pd.DataFrame, by: list[str]) -> tuple[np.ndarray, int, int]:
    """Integer group slots: row ``i`` is in slot ``keys[i] - low``, ``0 <= slot < nslots``.

    Equal keys share a slot and distinct keys never do (nulls form their own
    group). Integer keys spanning a small range are their own slots, with no
    factorising; otherwise slots are factorised codes. Some slots may be empty.

    Returns
    -------
    keys : numpy.ndarray
        ``int64``, one per row (possibly the key column itself, read-only).
    low : int
    nslots : int

    Examples
    --------
    >>> keys, low, nslots = group_slots(pd.DataFrame({"a": [7, 5, 7]}), ["a"])
    >>> (keys - low).tolist(), nslots
    ([2, 0, 2], 3)
    """
    _check_keys(df, by)
    if len(df) == 0:
        return np.zeros(0, np.int64), 0, 0
    if len(by) == 1 and df[by[0]].dtype.kind in "iu":
        direct = _dense_integers(df[by[0]].to_numpy())
        if direct is not None:
            return direct
    codes, size = None, 1
    for name in by:
        part, uniques = pd.factorize(df[name], use_na_sentinel=False)
        part = part.astype(np.int64, copy=False)
        codes, size = (part, len(uniques)) if codes is None else (codes * len(uniques) + part,
                                                                   size * len(uniques))
        if size > 2 * len(df) + 1024:  # too sparse to bucket: renumber densely
            codes, uniques = pd.factorize(codes)
            size = len(uniques)
    return np.ascontiguousarray(codes, dtype=np.int64), 0, int(size)


@jit
def _min_max(values):
    low = high = values[0]
    for i in range(1, values.size):
        low, high = min(low, values[i]), max(high, values[i])
    return low, high


def _dense_integers(values: np.ndarray):
    """Integer keys spanning a small range are their own slots."""
    if values.dtype == np.int64:  # one pass rather than numpy's two
        low, high = (int(v) for v in _min_max(values))
    else:
        low, high = int(values.min()), int(values.max())
    if high - low > 2 * values.size + 1024:
        return None
    if values.dtype == np.int64:
        return values, low, high - low + 1
    shifted = (values - values.dtype.type(low)).astype(np.int64)
    return shifted, 0, high - low + 1


def group_codes(df: pd.DataFrame, by: list[str]) -> tuple[np.ndarray, int]:
    """Dense ``int64`` group codes over ``by`` (nulls form their own group).

    Examples
    --------
    >>> codes, n = group_codes(pd.DataFrame({"a": [1, 1, None], "b": ["x", "x", "y"]}), ["a", "b"])
    >>> codes.tolist(), n
    ([0, 0, 1], 2)
    """
    keys, low, nslots = group_slots(df, by)
    if len(keys) == 0:
        return keys, 0
    present = np.zeros(nslots, np.int64)
    slots = keys - low
    present[slots] = 1
    renumber = np.cumsum(present) - 1  # skip empty slots so codes stay dense
    return np.ascontiguousarray(renumber[slots]), int(renumber[-1]) + 1


# -- the layout ----------------------------------------------------------------------------
def _chunk_shift(n: int, nslots: int) -> int:
    """Slots per chunk, as a power of two, for about ``ROWS_PER_CHUNK`` rows a chunk."""
    chunks = max(1, n // ROWS_PER_CHUNK)
    return max(0, int(np.ceil(np.log2(max(1.0, nslots / chunks)))))


def group_layout(df: pd.DataFrame, by: list[str], order_by: str | None) -> Layout:
    """The :class:`Layout` putting each group's rows together, in ``order_by`` order.

    Parameters
    ----------
    df : pandas.DataFrame
    by : list of str
        Key columns; every row with equal keys lands in one group.
    order_by : str or None
        Column ordering the rows of a group; NaN, NaT and nulls first, ties in
        their original order. ``None`` keeps the original order.
    """
    keys, low, nslots = group_slots(df, by)
    n = len(keys)
    key, valid = None, _NO_VALID
    if order_by is not None:
        if order_by not in df.columns:
            raise SchemaError(f"order_by column {order_by!r} not found; the frame has "
                              f"{list(df.columns)}", column=order_by)
        key, valid = order_key(df[order_by])
        key = np.ascontiguousarray(key, dtype=np.int64)
        valid = _NO_VALID if valid.all() else np.ascontiguousarray(valid)
    start, grouped = _histogram(keys, np.int64(low), nslots)
    offsets = np.append(start[:-1][np.diff(start) > 0], np.int64(n))
    if grouped and (key is None or _groups_in_order(start, key, valid)):
        return Layout(offsets, key)
    index = np.int32 if max(n, nslots) < 2**31 else np.int64
    skey = np.empty(n if key is not None else 0, np.int64)
    tvalid = valid
    scratch = None
    if grouped:  # already in chunk order: only groups need sorting
        cshift, cstart, d1 = 62, np.array([0, n], np.int64), None
        tkey, tslot, tlow = key if key is not None else skey, keys, np.int64(low)
        src = np.empty(n, index)
    else:
        cshift = _chunk_shift(n, nslots)
        cstart = start[np.minimum(np.arange(0, nslots + (1 << cshift), 1 << cshift), nslots)]
        d1, tslot, tlow = np.empty(n, index), np.empty(n, index), index(0)
        tkey = np.empty(n if key is not None else 0, np.int64)
        tvalid = np.empty(valid.size, np.bool_)
        _to_chunks(keys, np.int64(low), np.int64(cshift), cstart,
                   key if key is not None else skey, valid, d1, tkey, tslot, tvalid)
        scratch = tkey if key is not None else None
        src = tslot  # overwritten in place
    _in_chunks(cstart, start, np.int64(cshift), tslot, tlow, tkey, tvalid, skey, src, src is tslot)
    return Layout(offsets, skey if key is not None else None, d1, src, scratch)


def warm_up_grouping() -> None:
    """Load the grouping helpers' machine code now rather than in the first task."""
    grouped = pd.DataFrame({"k": [1, 1, 2], "t": [2, 1, 3], "f": [1.0, np.nan, 2.0],
                            "s": ["a", "a", None], "b": [True, False, True]})
    for frame in (grouped, grouped.iloc[[2, 0, 1]]):
        for by, order_by in ((["k"], "t"), (["s"], "f"), (["s"], None), (["k"], None)):
            layout = group_layout(frame, by, order_by)
            for column in ("t", "f", "b"):
                layout.to_rows(layout.to_groups(frame[column].to_numpy()))
                layout.to_rows(layout.to_groups(frame[column].to_numpy().copy()))
