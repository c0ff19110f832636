"""Merge-key hashing and duplicate resolution, shared by the driver and the workers.

The 64-bit hash only routes rows and prunes work; every match is confirmed on
the real key values, so a hash collision can cost time but never correctness.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.errors import DuplicateKeyError


def hash_keys(df: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """A deterministic uint64 per row of the key columns."""
    try:
        from etl.kernels import hash_rows
    except ImportError:  # the kernel layer is optional while it is being built
        return pd.util.hash_pandas_object(df[list(keys)], index=False).to_numpy(np.uint64)
    return hash_rows(df, list(keys))


def resolve_duplicates(df: pd.DataFrame, keys: list[str], order_by: str | None,
                       where: str = "the source batch", hashes: np.ndarray | None = None) -> tuple[pd.DataFrame, int]:
    """One row per key: the latest by ``order_by``, or an error.

    Rows that are exact copies of each other are always collapsed. Returns the
    deduplicated frame and the number of rows dropped. With the rows' key
    ``hashes``, a numba kernel answers the common case (no duplicate) at once.

    Raises
    ------
    DuplicateKeyError
        Different rows share a key and no ``order_by`` is declared, or the
        latest rows of a key tie on ``order_by`` (which one wins would depend on
        how the input happened to be partitioned).

    Examples
    --------
    >>> df = pd.DataFrame({"k": [1, 1, 2], "ts": [1, 2, 1], "v": ["old", "new", "x"]})
    >>> out, dropped = resolve_duplicates(df, ["k"], "ts")
    >>> out["v"].tolist(), dropped
    (['new', 'x'], 1)
    """
    if hashes is not None:
        from etl.kernels import duplicate_keys

        if not len(duplicate_keys(np.asarray(hashes, dtype=np.uint64))):
            return df, 0
    if not df.duplicated(subset=keys, keep=False).any():
        return df, 0
    n = len(df)
    df = df.drop_duplicates()
    dup = df.duplicated(subset=keys, keep=False)
    if not dup.any():
        return df, n - len(df)
    if order_by is None:
        _refuse(df.loc[dup], keys, where, "Declare order_by= on the Target so the latest row wins, "
                                          "or deduplicate in the transform.")
    latest = df.groupby(keys, sort=False, dropna=False)[order_by].transform("max")
    top = df[(df[order_by] == latest) | (latest.isna() & df[order_by].isna())]
    tied = top.duplicated(subset=keys, keep=False)
    if tied.any():
        _refuse(top.loc[tied], keys, where, f"The latest rows of these keys tie on {order_by!r}; make "
                                            f"{order_by!r} unique per key, or deduplicate in the transform.")
    return top, n - len(top)


def _refuse(rows: pd.DataFrame, keys: list[str], where: str, what_to_do: str) -> None:
    sample = rows[keys].drop_duplicates().head(3).to_dict("records")
    raise DuplicateKeyError(
        f"{where} holds {len(rows)} different rows sharing {len(rows[keys].drop_duplicates())} merge key(s) "
        f"{keys}, e.g. {sample}. {what_to_do}", keys=list(keys), examples=sample)
