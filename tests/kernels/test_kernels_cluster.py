"""On a real multi-process Dask cluster each worker compiles each kernel at most once."""

from __future__ import annotations

import os

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from etl.frames.kernel_apply import WarmUpKernels
from etl.kernels import compile_counts, kernel, running_agg, sessionize
from etl.kernels.library import LIBRARY_KERNELS, _running, _sessions

pytestmark = pytest.mark.cluster


def _events(n: int, keys: int) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    return pd.DataFrame({"user": rng.integers(0, keys, n),
                         "ts": pd.Timestamp("2024-01-01", tz="UTC")
                         + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
                         "amount": rng.integers(0, 50, n).astype(float)})


def test_each_worker_process_compiles_each_kernel_at_most_once():
    @kernel(inputs={"amount": "float64"}, outputs={"cents": "int64"})
    def to_cents(amount, cents):  # defined here: shipped to workers by value
        for i in range(amount.size):
            cents[i] = np.int64(amount[i] * 100)

    pdf = _events(20_000, 300)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.register_plugin(WarmUpKernels(*LIBRARY_KERNELS))
        warmed = client.run(compile_counts)
        ddf = dd.from_pandas(pdf, npartitions=24, sort=False)
        pipeline = to_cents(running_agg(sessionize(ddf, "user", "ts", "2h"), "user", "ts", "amount"))
        first = pipeline.compute()
        second = pipeline.compute()
        counts = client.run(compile_counts)

    expected = to_cents(running_agg(sessionize(pdf, "user", "ts", "2h"), "user", "ts", "amount"))
    pd.testing.assert_frame_equal(first.sort_index(), expected, check_dtype=False)
    pd.testing.assert_frame_equal(second.sort_index(), first.sort_index())

    assert len(counts) == 2
    pids = {stats["pid"] for worker in counts.values() for stats in worker.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    for name in (_sessions.name, _running.name):  # loaded once, at worker set-up, never again
        assert [w[name]["materialisations"] for w in warmed.values()] == [1, 1]
        assert [w[name]["materialisations"] for w in counts.values()] == [1, 1]
    per_worker = [w.get(to_cents.name, {}).get("materialisations", 0) for w in counts.values()]
    assert max(per_worker) <= 1 and sum(per_worker) >= 1, per_worker
