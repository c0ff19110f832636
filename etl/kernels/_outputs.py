"""Kernel output arrays back to pandas columns of their declared dtypes.

Nulls stay nulls: a mask becomes ``<NA>`` in masked and Arrow dtypes and
``NaT`` in timestamps; writing a null into a dtype that cannot hold one (numpy
``int64``, ``float64``, ``bool``) is a :class:`~etl.errors.SchemaError`, never
a silent 0 or NaN. Timestamps come back from UTC nanoseconds in the declared
time zone and unit.

Examples
--------
>>> import numpy as np
>>> from_numpy(np.array([1, 0, 3]), np.array([False, True, False]), "Int64").tolist()
[1, <NA>, 3]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from etl.errors import SchemaError

__all__ = ["from_numpy"]


def from_numpy(values: np.ndarray, null: np.ndarray | None, dtype, index=None, name=None,
               uniques: pd.Index | None = None) -> pd.Series:
    """Build a pandas column of ``dtype`` from kernel output arrays.

    Parameters
    ----------
    values : numpy.ndarray
        ``int64``, ``uint64``, ``float64`` or ``bool`` values; ``int64``
        nanoseconds (UTC) for timestamp dtypes; codes when ``uniques`` is given.
    null : numpy.ndarray or None
        ``True`` where the result is null.
    dtype : str or pandas dtype
        The declared output dtype.
    uniques : pandas.Index, optional
        Decode ``values`` as codes into these values.

    Raises
    ------
    SchemaError
        Nulls were written to a dtype that cannot hold them.

    Examples
    --------
    >>> import numpy as np
    >>> s = from_numpy(np.array([0]), None, "datetime64[ns, Europe/Paris]")
    >>> str(s[0])
    '1970-01-01 01:00:00+01:00'
    """
    dtype = pd.api.types.pandas_dtype(dtype)
    has_null = null is not None and bool(null.any())
    if uniques is not None:
        out = uniques.take(np.where(null, -1, values) if has_null else values,
                           allow_fill=True, fill_value=None)
        return pd.Series(out, index=index, name=name).astype(dtype)
    if ptypes.is_datetime64_any_dtype(dtype) or ptypes.is_timedelta64_dtype(dtype):
        return _temporal(values, null if has_null else None, dtype, index, name)
    if isinstance(dtype, np.dtype):
        if has_null:
            raise SchemaError(f"output {name!r}: nulls written to non-nullable dtype {dtype}; "
                              "declare a nullable dtype such as 'Int64' or 'Float64'", column=name)
        return pd.Series(values, index=index, name=name, dtype=dtype, copy=False)
    mask = null if null is not None else np.zeros(len(values), dtype=bool)
    return pd.Series(_masked_array(values, mask), index=index, name=name, copy=False).astype(dtype)


def _masked_array(values: np.ndarray, mask: np.ndarray):
    cls = {"i": pd.arrays.IntegerArray, "u": pd.arrays.IntegerArray,
           "f": pd.arrays.FloatingArray, "b": pd.arrays.BooleanArray}[values.dtype.kind]
    return cls(values, mask.astype(bool, copy=False))


def _temporal(values, null, dtype, index, name) -> pd.Series:
    unit = "M8[ns]" if ptypes.is_datetime64_any_dtype(dtype) else "m8[ns]"
    arr = values.astype(np.int64, copy=True).view(unit)
    if null is not None:
        arr[null] = np.datetime64("NaT") if unit == "M8[ns]" else np.timedelta64("NaT")
    series = pd.Series(arr, index=index, name=name)
    tz = getattr(dtype, "tz", None) or getattr(getattr(dtype, "pyarrow_dtype", None), "tz", None)
    if tz is not None:
        series = series.dt.tz_localize("UTC").dt.tz_convert(tz)
    return series.astype(dtype)
