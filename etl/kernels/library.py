"""Ready-made kernels for event data: sessions, running and rolling aggregates, dedup.

Each function takes a pandas or a Dask frame and returns the same kind, with
new columns (or, for :func:`dedup_latest`, fewer rows). On Dask the rows of a
key are first shuffled into one partition, so results equal the pandas ones.

Time columns may be timestamps (any unit or time zone; spans such as
``"30min"``) or integers (spans in the same unit). Rows with a null time get
null outputs and do not count for other rows. Ties in time are *peers*: they
get the same running and window values whatever their order, as in SQL's
``RANGE`` frames, so results never depend on row order.

On a pandas frame whose rows already arrive in time order (as event logs often
do), :func:`sessionize` and :func:`running_agg` skip grouping altogether: one
pass over the rows keeps each key's state (see
:func:`~etl.kernels._apply.run_in_row_order`), with the same results.

Examples
--------
>>> import pandas as pd
>>> events = pd.DataFrame({"user": ["a", "a", "a", "b"],
...                        "ts": pd.to_datetime(["2024-01-01 09:00", "2024-01-01 09:10",
...                                              "2024-01-01 11:00", "2024-01-01 09:00"]),
...                        "amount": [1.0, 2.0, 4.0, 8.0]})
>>> sessionize(events, by="user", time="ts", gap="30min")["session"].tolist()
[0, 0, 1, 0]
>>> running_agg(events, by="user", time="ts", value="amount", aggs=["sum"])["amount_running_sum"].tolist()
[1.0, 3.0, 7.0, 8.0]
>>> rolling_agg(events, by="user", time="ts", value="amount", window="1h")["amount_rolling_sum"].tolist()
[1.0, 3.0, 4.0, 8.0]
>>> dedup_latest(events, by="user", order_by="ts")["amount"].tolist()
[4.0, 8.0]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.errors import ConfigError
from etl.kernels._apply import run_in_row_order
from etl.kernels._grouping import group_slots
from etl.kernels._kernel import kernel
from etl.kernels._keys import latest_per_code
from etl.kernels._numba import jit

__all__ = ["LIBRARY_KERNELS", "dedup_latest", "rolling_agg", "running_agg", "sessionize"]


@kernel(inputs={"time": "int64"}, outputs={"session": "Int64"}, params={"gap": "int64"})
def _sessions(time, time_null, gap, offsets, session, session_null):
    """Session number per key: a new session starts after a gap longer than ``gap``."""
    limit = np.uint64(gap)
    for g in range(offsets.size - 1):
        number, prev = -1, 0
        for i in range(offsets[g], offsets[g + 1]):
            if time_null[i]:
                session_null[i] = True
                continue
            if number < 0 or np.uint64(time[i]) - np.uint64(prev) > limit:
                number += 1
            prev = time[i]
            session[i] = number


@jit
def _null_outputs(i, want_sum, sum_null, want_count, count_null, want_mean, mean_null, want_max, max_null):
    """Row ``i`` gets null in every requested running output (a row whose time is null)."""
    if want_sum:
        sum_null[i] = True
    if want_count:
        count_null[i] = True
    if want_mean:
        mean_null[i] = True
    if want_max:
        max_null[i] = True


@jit
def _sessions_in_row_order(keys, low, nslots, time, time_null, gap, session, session_null):
    """:func:`_sessions` over rows already in time order, with per-key state."""
    limit = np.uint64(gap)
    state = np.empty((nslots, 2), np.int64)  # session number and last time side by side: one cache line
    state[:, 0] = -1
    has_null = time_null.size > 0
    for i in range(keys.size):
        if has_null and time_null[i]:
            session_null[i] = True
            continue
        s, t = keys[i] - low, time[i]
        n = state[s, 0]
        if n < 0 or np.uint64(t) - np.uint64(state[s, 1]) > limit:
            n += 1
            state[s, 0] = n
        state[s, 1] = t
        session[i] = n


# Library kernels write their outputs inline: a helper taking the output arrays,
# called per row, costs reference counting on every call even when inlined.
# Outputs the caller did not select arrive empty (unselected="empty").

@kernel(inputs={"time": "int64", "value": "float64"},
        outputs={"sum": "Float64", "count": "Int64", "mean": "Float64", "max": "Float64"},
        unselected="empty")
def _running(time, time_null, value, value_null, offsets,
             sum, sum_null, count, count_null, mean, mean_null, max, max_null):
    """Running aggregates over all earlier rows and peers of a key (NaN and nulls skipped).

    Each row is written as soon as it is added; when a run of peers (rows
    sharing a time) ends, its earlier rows are written again with the state
    after all of them.
    """
    want_sum, want_count, want_mean, want_max = sum.size > 0, count.size > 0, mean.size > 0, max.size > 0
    for g in range(offsets.size - 1):
        total, n, peak = 0.0, 0, -np.inf
        run, end = offsets[g], offsets[g + 1]
        for i in range(offsets[g], end):
            if time_null[i]:  # null times sort first: null outputs, and they count for no one
                _null_outputs(i, want_sum, sum_null, want_count, count_null, want_mean, mean_null,
                              want_max, max_null)
                run = i + 1
                continue
            if time[i] != time[run]:
                if i - run > 1:
                    _fill_peers(run, i - 1, total, n, peak,
                                sum, sum_null, count, mean, mean_null, max, max_null)
                run = i
            x = value[i]
            if not value_null[i] and x == x:
                total, n, peak = total + x, n + 1, x if x > peak else peak
            if want_sum:
                sum[i], sum_null[i] = total, n == 0
            if want_count:
                count[i] = n
            if want_mean:
                mean[i], mean_null[i] = total / n if n > 0 else 0.0, n == 0
            if want_max:
                max[i], max_null[i] = peak, n == 0
        if end - run > 1:
            _fill_peers(run, end - 1, total, n, peak,
                        sum, sum_null, count, mean, mean_null, max, max_null)


@jit
def _fill_peers(start, end, total, n, peak, sum, sum_null, count, mean, mean_null, max, max_null):
    """Rows ``start:end`` of one key get that key's state (peers of a later row)."""
    for k in range(start, end):
        if sum.size > 0:
            sum[k], sum_null[k] = total, n == 0
        if count.size > 0:
            count[k] = n
        if mean.size > 0:
            mean[k], mean_null[k] = total / n if n > 0 else 0.0, n == 0
        if max.size > 0:
            max[k], max_null[k] = peak, n == 0


@jit
def _running_in_row_order(keys, low, nslots, ties, time, time_null, value, value_null,
                          sum, sum_null, count, count_null, mean, mean_null, max, max_null):
    """:func:`_running` over rows already in time order, with per-key state.

    Each row is written as soon as it is added. Rows sharing a time are peers
    and must all see the state after all of them: if there are any (``ties``),
    a second pass (:func:`_share_among_peers`) fixes them. Per key, values are
    added in the same order as the kernel adds them.
    """
    want_sum, want_count, want_mean, want_max = sum.size > 0, count.size > 0, mean.size > 0, max.size > 0
    has_time_null, has_value_null = time_null.size > 0, value_null.size > 0
    state = np.zeros((nslots, 2))  # total and count side by side (one cache line); exact counts to 2**53
    peaks = np.full(nslots if want_max else 0, -np.inf)
    for i in range(keys.size):
        if has_time_null and time_null[i]:
            _null_outputs(i, want_sum, sum_null, want_count, count_null, want_mean, mean_null, want_max, max_null)
            continue
        s, x = keys[i] - low, value[i]
        if not (has_value_null and value_null[i]) and x == x:
            state[s, 0] += x
            state[s, 1] += 1.0
            if want_max and x > peaks[s]:
                peaks[s] = x
        total, n = state[s, 0], state[s, 1]
        if want_sum:
            sum[i], sum_null[i] = total, n == 0.0
        if want_count:
            count[i] = np.int64(n)
        if want_mean:
            mean[i], mean_null[i] = total / n if n > 0.0 else 0.0, n == 0.0
        if want_max:
            max[i], max_null[i] = peaks[s], n == 0.0
    if ties:
        _share_among_peers(keys, low, nslots, time, time_null,
                           sum, sum_null, count, mean, mean_null, max, max_null)


@jit
def _share_among_peers(keys, low, nslots, time, time_null,
                       sum, sum_null, count, mean, mean_null, max, max_null):
    """In each run of rows sharing a time, every row of a key gets the outputs of that
    key's last row in the run: the only one written after all its peers were added."""
    has_time_null = time_null.size > 0
    run_of, last_of = np.full(nslots, -1, np.int64), np.zeros(nslots, np.int64)
    end = keys.size
    while end > 0:  # runs from the last one back, each walked backwards
        while end > 0 and has_time_null and time_null[end - 1]:
            end -= 1
        if end == 0:
            break
        t, k = time[end - 1], end - 1
        while k >= 0:
            if not (has_time_null and time_null[k]):
                if time[k] != t:
                    break
                s = keys[k] - low
                if run_of[s] != end:
                    run_of[s], last_of[s] = end, k
                else:
                    j = last_of[s]
                    if sum.size > 0:
                        sum[k], sum_null[k] = sum[j], sum_null[j]
                    if count.size > 0:
                        count[k] = count[j]
                    if mean.size > 0:
                        mean[k], mean_null[k] = mean[j], mean_null[j]
                    if max.size > 0:
                        max[k], max_null[k] = max[j], max_null[j]
            k -= 1
        end = k + 1


@kernel(inputs={"time": "int64", "value": "float64"},
        outputs={"sum": "Float64", "count": "Int64", "mean": "Float64"},
        params={"window": "int64", "left_closed": "bool", "right_closed": "bool"},
        unselected="empty")
def _rolling(time, time_null, value, value_null, window, left_closed, right_closed, offsets,
             sum, sum_null, count, count_null, mean, mean_null):
    """Aggregates over the rows of a key whose time lies in the window ending at each row."""
    want_sum, want_count, want_mean = sum.size > 0, count.size > 0, mean.size > 0
    span = np.uint64(window)
    for g in range(offsets.size - 1):
        start, end = offsets[g], offsets[g + 1]
        lo = hi = start
        total, n = 0.0, 0
        for i in range(start, end):
            null = time_null[i]
            if null:  # null times sort first: the window starts after them
                lo = hi = i + 1
            while not null and hi < end and (time[hi] < time[i] or (right_closed and time[hi] == time[i])):
                if not value_null[hi] and value[hi] == value[hi]:
                    total, n = total + value[hi], n + 1
                hi += 1
            while not null and lo < hi:
                age = np.uint64(time[i]) - np.uint64(time[lo])
                if age < span or (left_closed and age == span):
                    break
                if not value_null[lo] and value[lo] == value[lo]:
                    total, n = total - value[lo], n - 1
                lo += 1
            total = total if n > 0 else 0.0  # no drift once the window empties
            empty = null or n == 0
            if want_sum:
                sum[i], sum_null[i] = total, empty
            if want_count:
                count[i], count_null[i] = n, null
            if want_mean:
                mean[i], mean_null[i] = total / n if n > 0 else 0.0, empty


LIBRARY_KERNELS = (_sessions, _running, _rolling)
"""The library's kernels, e.g. for ``warm_up(*LIBRARY_KERNELS)`` on each worker."""

_CLOSED = {"right": (False, True), "both": (True, True), "left": (True, False),
           "neither": (False, False)}


def _keys(by) -> list[str]:
    keys = [by] if isinstance(by, str) else list(by)
    if not keys:
        raise ConfigError("by must name at least one key column", option="by")
    return keys


def _span(value, dtype, option: str) -> int:
    """A gap or window in the time column's unit: nanoseconds for timestamps."""
    temporal = pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype)
    try:
        span = pd.Timedelta(value).value if temporal else int(value)
    except (TypeError, ValueError) as exc:
        unit = "a duration such as '30min'" if temporal else "an integer in the time column's unit"
        raise ConfigError(f"{option}={value!r} is not {unit}", option=option) from exc
    if span < 0:
        raise ConfigError(f"{option}={value!r} is negative; use a span >= 0", option=option)
    return span


def _outputs(kind: str, aggs, prefix: str, allowed) -> dict[str, str]:
    bad = [a for a in aggs if a not in allowed]
    if bad or not aggs:
        raise ConfigError(f"{kind} aggregates {bad or list(aggs)} are not supported; choose from "
                          f"{list(allowed)}", option="aggs")
    return {a: f"{prefix}{a}" for a in aggs}


def sessionize(df, by, time: str, gap, *, out: str = "session"):
    """Number each key's sessions: a new session starts after more than ``gap`` of inactivity.

    Parameters
    ----------
    df : pandas.DataFrame or dask.dataframe.DataFrame
    by : str or list of str
        Key columns (e.g. the user).
    time : str
        Event time column (timestamps or integers).
    gap : str, Timedelta or int
        Longest inactivity inside one session; a gap of exactly ``gap`` continues
        the session.
    out : str, default "session"
        Output column: ``Int64`` session number per key, from 0 in time order;
        null where ``time`` is null.
    """
    span = _span(gap, df[time].dtype, "gap")
    bound = _sessions.bind(columns={"time": time}, outputs={"session": out}, by=_keys(by),
                           order_by=time, gap=span)
    if isinstance(df, pd.DataFrame):
        def fill(keys, low, nslots, ties, inputs, outputs):
            _sessions_in_row_order(keys, low, nslots, *inputs["time"], np.int64(span),
                                   *outputs["session"])
        in_order = run_in_row_order(bound, df, "time", fill)
        if in_order is not None:
            return in_order
    return bound(df)


def running_agg(df, by, time: str, value: str, *, aggs=("sum", "count", "mean", "max"),
                prefix: str | None = None):
    """Per-key running aggregates of ``value`` over time (SQL ``RANGE UNBOUNDED PRECEDING``).

    Row ``i`` aggregates every row of its key with time <= its time. NaN and
    null values are skipped; ``sum``, ``mean`` and ``max`` are null until a
    value is seen; ``count`` counts values.

    Parameters
    ----------
    aggs : sequence of {"sum", "count", "mean", "max"}
    prefix : str, optional
        Output columns are ``prefix + agg``; default ``f"{value}_running_"``.
    """
    names = _outputs("running", aggs, prefix or f"{value}_running_", ("sum", "count", "mean", "max"))
    bound = _running.bind(columns={"time": time, "value": value}, outputs=names, by=_keys(by),
                          order_by=time)
    if isinstance(df, pd.DataFrame):
        def fill(keys, low, nslots, ties, inputs, outputs):
            _running_in_row_order(keys, low, nslots, ties, *inputs["time"], *inputs["value"],
                                  *outputs["sum"], *outputs["count"], *outputs["mean"],
                                  *outputs["max"])
        in_order = run_in_row_order(bound, df, "time", fill)
        if in_order is not None:
            return in_order
    return bound(df)


def rolling_agg(df, by, time: str, value: str, window, *, aggs=("sum", "count", "mean"),
                closed: str = "right", prefix: str | None = None):
    """Per-key aggregates of ``value`` over a time window ending at each row.

    With ``closed="right"`` (the default, as in pandas) row ``i`` aggregates the
    rows of its key with ``t_i - window < t <= t_i``; ``"both"`` makes the left
    bound inclusive, ``"left"`` is ``[t_i - window, t_i)`` and ``"neither"``
    ``(t_i - window, t_i)``. Rows sharing ``t_i`` are all in or all out.

    Parameters
    ----------
    window : str, Timedelta or int
        Window length, e.g. ``"7D"``.
    aggs : sequence of {"sum", "count", "mean"}
    closed : {"right", "both", "left", "neither"}, default "right"
    prefix : str, optional
        Output columns are ``prefix + agg``; default ``f"{value}_rolling_"``.
    """
    if closed not in _CLOSED:
        raise ConfigError(f"closed={closed!r}; use one of {list(_CLOSED)}", option="closed")
    left, right = _CLOSED[closed]
    names = _outputs("rolling", aggs, prefix or f"{value}_rolling_", ("sum", "count", "mean"))
    bound = _rolling.bind(columns={"time": time, "value": value}, outputs=names, by=_keys(by),
                          order_by=time, window=_span(window, df[time].dtype, "window"),
                          left_closed=left, right_closed=right)
    return bound(df)


def _latest_rows(df: pd.DataFrame, keys: list[str], order_by: str) -> pd.DataFrame:
    slots, low, nslots = group_slots(df, keys)
    return df.iloc[latest_per_code(slots - low if low else slots, nslots, df[order_by])]


def dedup_latest(df, by, order_by: str):
    """Keep the latest row of each key: greatest ``order_by``; ties keep the last row.

    The rule of :func:`~etl.kernels.latest_per_key` (NaN, NaT and null
    ``order_by`` values lose to any value), with keys compared exactly
    (factorised, null keys form one key) rather than by hash. Kept rows stay
    in their original order with their index. On Dask, "last row" among exact
    ties depends on the shuffle; declare a unique ``order_by``.
    """
    keys = _keys(by)
    if isinstance(df, pd.DataFrame):
        return _latest_rows(df, keys, order_by)
    from etl.frames.kernel_apply import map_by_key  # the only bridge to dask

    return map_by_key(df, _latest_rows, keys, keys=keys, order_by=order_by)
