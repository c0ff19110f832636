"""Hypothesis strategies and column variants shared by the kernel tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

ints = st.one_of(st.integers(INT64_MIN, INT64_MAX), st.sampled_from([INT64_MIN, INT64_MAX, 0, -1]))
maybe_ints = st.lists(st.one_of(st.none(), ints), max_size=25)
texts = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=20)
maybe_texts = st.lists(st.one_of(st.none(), texts), max_size=25)
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0]))
maybe_floats = st.lists(st.one_of(st.none(), floats), max_size=25)
# whole seconds between 1700 and 2250, so every unit from s to ns holds them exactly
seconds = st.integers(-8_500_000_000, 8_700_000_000)
maybe_seconds = st.lists(st.one_of(st.none(), seconds), max_size=25)


def int_variants(values: list) -> dict[str, pd.Series]:
    """The same logical integers in every backing that can hold them."""
    out = {"Int64": pd.Series(pd.array(values, dtype="Int64")),
           "int64[pyarrow]": pd.Series(values, dtype="int64[pyarrow]"),
           "object": pd.Series(values, dtype=object)}
    if None not in values:
        out["int64"] = pd.Series(values, dtype="int64")
        if values and min(values) >= 0:
            out["uint64"] = pd.Series(values, dtype="uint64")
    return out


def string_variants(values: list) -> dict[str, pd.Series]:
    return {name: pd.Series(values, dtype=dtype) for name, dtype in [
        ("object", object), ("str", "str"), ("string[pyarrow]", "string[pyarrow]"),
        ("string[python]", "string[python]"), ("category", "category"),
        ("large_string[pyarrow]", pd.ArrowDtype(pa.large_string()))]}


def float_variants(values: list) -> dict[str, pd.Series]:
    """Floats where ``None`` is null and NaN is a value (numpy float64 only without nulls)."""
    data = np.array([0.0 if v is None else v for v in values], dtype=np.float64)
    mask = np.array([v is None for v in values], dtype=bool)
    out = {"Float64": pd.Series(pd.arrays.FloatingArray(data, mask)),
           "double[pyarrow]": pd.Series(pd.arrays.ArrowExtensionArray(
               pa.array(data, mask=mask, type=pa.float64())))}
    if not mask.any():
        out["float64"] = pd.Series(data)
    return out


def time_variants(values: list) -> dict[str, pd.Series]:
    """The same instants (whole seconds, UTC) in every unit and time zone."""
    base = pd.Series(pd.to_datetime(pd.Series(values, dtype="Int64"), unit="s"))
    utc = base.dt.tz_localize("UTC")
    return {
        "M8[s]": base.astype("datetime64[s]"), "M8[ms]": base.astype("datetime64[ms]"),
        "M8[ns]": base.astype("datetime64[ns]"), "UTC": utc,
        "Asia/Kolkata": utc.dt.tz_convert("Asia/Kolkata"),
        "America/New_York[ns]": utc.dt.tz_convert("America/New_York").dt.as_unit("ns"),
        "timestamp[us,UTC][pyarrow]": utc.astype(pd.ArrowDtype(pa.timestamp("us", "UTC"))),
    }
