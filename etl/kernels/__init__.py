"""Numba kernels: hot per-row and per-group logic as compiled functions over numpy arrays.

This package never imports dask; :mod:`etl.frames.kernel_apply` is the only
bridge to Dask frames.

Declaring and applying a kernel
    :func:`kernel`, :class:`Kernel`, :func:`warm_up`, :func:`compile_counts`,
    :func:`cache_dir`.
Columns as numpy arrays plus null masks
    :func:`to_numpy`, :func:`from_numpy`.
Framework hot paths (MERGE, idempotence)
    :func:`hash_rows`, :func:`fingerprint`, :func:`fingerprint_hex`,
    :func:`latest_per_key`, :func:`duplicate_keys`, :func:`match_keys`.
A library of ready kernels
    :func:`sessionize`, :func:`running_agg`, :func:`rolling_agg`,
    :func:`dedup_latest` (``LIBRARY_KERNELS`` to warm them up on workers).
On Dask
    ``k(ddf)`` or :func:`etl.frames.kernel_apply.apply_kernel`; register
    :class:`etl.frames.kernel_apply.WarmUpKernels` so workers load machine code
    at start-up rather than in their first task.
"""

from etl.kernels._numba import cache_dir, compile_counts  # first: sets NUMBA_CACHE_DIR
from etl.kernels._columns import to_numpy
from etl.kernels._outputs import from_numpy
from etl.kernels._hashing import fingerprint, fingerprint_hex, hash_rows
from etl.kernels._arrow_hash import fingerprint_table, hash_table
from etl.kernels._keys import duplicate_keys, latest_per_key, match_keys
from etl.kernels._kernel import Kernel, kernel, warm_up
from etl.kernels.library import LIBRARY_KERNELS, dedup_latest, rolling_agg, running_agg, sessionize

__all__ = [
    "Kernel",
    "LIBRARY_KERNELS",
    "cache_dir",
    "compile_counts",
    "dedup_latest",
    "duplicate_keys",
    "fingerprint",
    "fingerprint_hex",
    "fingerprint_table",
    "from_numpy",
    "hash_rows",
    "hash_table",
    "kernel",
    "latest_per_key",
    "match_keys",
    "rolling_agg",
    "running_agg",
    "sessionize",
    "to_numpy",
    "warm_up",
]

