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
                       where: str = "the source batch") -> tuple[pd.DataFrame, int]:
    """One row per key: the latest by ``order_by`` (ties: the later row), or an error.

    Returns the deduplicated frame and the number of rows dropped.

    Raises
    ------
    DuplicateKeyError
        Duplicate keys and no ``order_by`` declared; the message shows some of them.
    """
    dup = df.duplicated(subset=keys, keep=False)
    if not dup.any():
        return df, 0
    if order_by is None:
        sample = df.loc[dup, keys].drop_duplicates().head(3).to_dict("records")
        raise DuplicateKeyError(
            f"{where} holds {int(dup.sum())} rows sharing {len(df.loc[dup, keys].drop_duplicates())} merge "
            f"key(s) {keys}, e.g. {sample}. Declare order_by= on the Target so the latest row wins, "
            "or deduplicate in the transform.", keys=list(keys), examples=sample)
    pos = "_etl_pos"
    ranked = df.assign(**{pos: np.arange(len(df))}).sort_values([order_by, pos], na_position="first",
                                                                  kind="stable")
    kept = ranked.drop_duplicates(subset=keys, keep="last").sort_values(pos).drop(columns=pos)
    return kept, len(df) - len(kept)
