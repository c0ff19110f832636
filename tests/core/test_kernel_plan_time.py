"""A kernel numba cannot compile fails the plan, before any data is read or any table touched."""

from __future__ import annotations

import os

import pytest

import etl

BROKEN = '''
import dask.dataframe as dd
from etl import Schema, Source, Target, kernel, pipeline

@kernel(inputs={"x": "float64"}, outputs={"y": "float64"})
def broken_kernel(x, y):
    for i in range(x.size):
        y[i] = x[i] + "not a number"   # numba cannot type float + str

@pipeline(name="t_broken", sources={"src": Source.parquet("{warehouse}/in/*.parquet")},
          target=Target.append("b"), schema=Schema({"x": "float64", "y": "float64"}))
def t_broken(src: dd.DataFrame) -> dd.DataFrame:
    return broken_kernel(src)
'''


def test_uncompilable_kernel_fails_at_plan_time_naming_it(tmp_path, warehouse):
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "broken.py").write_text(BROKEN)
    p = etl.load_pipeline("t_broken", paths=[str(tmp_path / "pipes")])
    with pytest.raises(etl.ConfigError, match="broken_kernel") as info:
        etl.plan(p, warehouse=warehouse, touched=False)
    assert "numba" in str(info.value).lower() or "typing" in str(info.value).lower()
    with pytest.raises(etl.ConfigError, match="broken_kernel"):
        etl.run(p, warehouse=warehouse)  # no cluster started, no source needed: it fails first
    assert not os.path.exists(os.path.join(warehouse, "b"))
