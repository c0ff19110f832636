"""Load the machine code of the framework's own numba helpers, once per process.

Hashing, key matching and grouping helpers compile lazily for the array types
they first meet. :func:`warm_up_internals` meets each of them on a tiny frame,
so a worker that runs it at start-up (see ``etl.frames.kernel_apply.WarmUpKernels``)
does no compiling or cache loading inside its first task.

Examples
--------
>>> warm_up_internals()
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.kernels._grouping import group_codes, group_layout, warm_up_grouping
from etl.kernels._hashing import hash_rows
from etl.kernels._keys import duplicate_keys, latest_per_code, latest_per_key, match_keys

__all__ = ["warm_up_internals"]

_DONE: set = set()


def _sample() -> pd.DataFrame:
    return pd.DataFrame({
        "i": [1, 2], "u": np.array([1, 2], np.uint64), "f": [1.0, np.nan], "s": ["a", None],
        "b": [True, False], "t": pd.to_datetime([0, 1]), "d": pd.to_timedelta([1, 2]),
        "c": pd.Categorical(["x", "y"]), "n": pd.array([1, None], dtype="Int64"),
    })


def warm_up_internals(grouping: bool = True) -> bool:
    """Run the internal numba helpers once on tiny inputs; later calls return at once.

    Parameters
    ----------
    grouping : bool, default True
        Also the grouping and row-order helpers that kernels use. Without them,
        only what every run needs: row and key hashing, key matching, latest per key.

    Returns
    -------
    bool
        ``True`` once the helpers are loaded in this process.
    """
    wanted = {"hashing", "grouping"} if grouping else {"hashing"}
    if wanted <= _DONE:
        return True
    frame = _sample()
    hashes = hash_rows(frame, list(frame.columns))
    if "hashing" not in _DONE:
        for order in (frame["i"], frame["f"], frame["t"], frame["n"], None):
            latest_per_key(hashes, order)
        duplicate_keys(hashes)
        match_keys(hashes, hashes[:1])
        _DONE.add("hashing")
    if grouping and "grouping" not in _DONE:
        codes, ngroups = group_codes(frame, ["i"])
        latest_per_code(codes, ngroups, frame["t"])
        for order_by in ("i", "f", "n"):
            group_layout(frame, ["s"], order_by)
        warm_up_grouping()
        _warm_up_row_order(frame)
        _DONE.add("grouping")
    return True


def _warm_up_row_order(frame: pd.DataFrame) -> None:
    """The one-pass path of sessions and running aggregates over rows in time order."""
    from etl.kernels.library import running_agg, sessionize  # the library imports this module

    for by, time, value in (("i", "t", "f"), ("s", "n", "n")):  # numpy columns; masked, with nulls
        sessionize(frame, by, time, 1)
        running_agg(frame, by, time, value, aggs=["sum"])
        running_agg(frame.iloc[[0, 0]], by, time, value)  # peers
