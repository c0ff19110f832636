"""Run kernels on Dask dataframes: the only place where ``etl.kernels`` meets dask.

A row kernel maps over partitions. A per-group kernel first shuffles on its
key columns, so all rows of a key share one partition, then sorts each
partition by ``(by, order_by)`` inside :meth:`Kernel.apply`. The output
``meta`` comes from the kernel's declared outputs; nothing is computed to infer it.

Examples
--------
>>> import dask
>>> import dask.dataframe as dd
>>> import pandas as pd
>>> from etl.kernels import sessionize
>>> pdf = pd.DataFrame({"user": [1, 2, 1, 1], "ts": [0, 5, 10, 100]})
>>> ddf = dd.from_pandas(pdf, npartitions=2)
>>> out = sessionize(ddf, by="user", time="ts", gap=30)
>>> with dask.config.set({"scheduler": "sync", "dataframe.shuffle.method": "tasks"}):
...     out.compute().sort_index()["session"].tolist()
[0, 0, 0, 1]
"""

from __future__ import annotations

from typing import Callable

import pandas as pd
from distributed import WorkerPlugin

from etl.errors import SchemaError

__all__ = ["WarmUpKernels", "apply_kernel", "is_dask_frame", "map_by_key", "partition_by_key"]


def is_dask_frame(obj) -> bool:
    """True for a Dask DataFrame (duck-typed: ``map_partitions``, ``_meta``, ``npartitions``)."""
    return all(hasattr(obj, a) for a in ("map_partitions", "_meta", "npartitions")) and \
        isinstance(getattr(obj, "_meta", None), pd.DataFrame)


def _require_columns(ddf, columns, what: str) -> None:
    missing = [c for c in columns if c is not None and c not in ddf.columns]
    if missing:
        raise SchemaError(f"{what} reads columns {missing}, which are not in the frame "
                          f"(columns: {list(ddf.columns)})", column=missing[0])


def partition_by_key(ddf, by: list[str]):
    """Shuffle so that every key of ``by`` lives in exactly one partition.

    A single-partition frame is returned unchanged.
    """
    _require_columns(ddf, by, "partitioning")
    if ddf.npartitions == 1:
        return ddf
    return ddf.shuffle(on=list(by))


def apply_kernel(df, kernel):
    """Apply ``kernel`` to a pandas or Dask frame; Dask stays lazy.

    Parameters
    ----------
    df : pandas.DataFrame or dask.dataframe.DataFrame
    kernel : etl.kernels.Kernel

    Returns
    -------
    Same type as ``df``, with the kernel's output columns.

    Raises
    ------
    ConfigError
        The kernel cannot be compiled (checked now, on the client).
    SchemaError
        A column the kernel reads is missing.
    TypeError
        ``df`` is neither a pandas nor a Dask frame.
    """
    if isinstance(df, pd.DataFrame):
        return kernel.apply(df)
    if not is_dask_frame(df):
        raise TypeError(f"kernel {kernel.name!r} applies to pandas or Dask DataFrames, "
                        f"got {type(df).__name__}")
    kernel.check()
    inputs = [kernel.column_of(name) for name in kernel.spec.inputs]
    _require_columns(df, [*inputs, *(kernel.by or ()), kernel.order_by], f"kernel {kernel.name!r}")
    meta = kernel.meta(df._meta)
    if kernel.grouped:
        df = partition_by_key(df, list(kernel.by))
    return df.map_partitions(kernel.apply, meta=meta)


def map_by_key(ddf, func: Callable[..., pd.DataFrame], by: list[str], **kwargs):
    """``func(partition, **kwargs)`` on each partition after :func:`partition_by_key`.

    ``meta`` is ``func`` applied to the empty ``ddf._meta``.
    """
    if not is_dask_frame(ddf):
        raise TypeError(f"map_by_key takes a Dask DataFrame, got {type(ddf).__name__}")
    meta = func(ddf._meta, **kwargs)
    return partition_by_key(ddf, by).map_partitions(func, meta=meta, **kwargs)


class WarmUpKernels(WorkerPlugin):
    """Worker plugin: load the kernels' machine code when each worker starts.

    Without it the first task on a worker pays numba's one-time set-up (a few
    hundred milliseconds) plus each kernel's cache load.

    Examples
    --------
    >>> from etl.kernels import library
    >>> plugin = WarmUpKernels(library._sessions)
    >>> plugin.name
    'etl-warm-up-kernels'

    ``client.register_plugin(WarmUpKernels(k1, k2))`` installs it on every
    current and future worker.
    """

    name = "etl-warm-up-kernels"

    def __init__(self, *kernels) -> None:
        self.kernels = kernels

    def setup(self, worker) -> None:
        from etl.kernels import warm_up

        warm_up(*self.kernels)
