"""Issue 4: a source file read that fails transiently is retried inside its Dask task.

The store is real (:mod:`tests.faults._flaky`: fsspec's local filesystem under
``flaky://``, failing the first opens of a file with ``ConnectionResetError``),
the cluster is the session's LocalCluster and the table a real Delta table. The
pipeline's ``retry=`` policy has millisecond delays, so nothing waits long.
"""

from __future__ import annotations

import os
import random

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

import etl
from etl import RetryPolicy, Source, Target, pipeline
from etl.io.sources import fetch
from etl.ledger.store import Ledger
from tests.core.helpers import SCHEMA, oracle, random_batch, table_frame, write_batch
from tests.faults import _flaky

FAST = dict(base_delay=0.001, max_delay=0.004)


@pytest.fixture
def flaky(client, tmp_path):
    """The ``flaky://`` protocol, registered here and on every worker; its attempt counts go to a tmp dir."""
    _flaky.register()
    client.register_plugin(_flaky.RegisterFlaky())
    state = tmp_path / "flaky-state"
    state.mkdir()
    return str(state)


def _pipe(state_dir: str, retry: RetryPolicy, **store):
    def identity(src: dd.DataFrame) -> dd.DataFrame:
        return src

    source = Source.parquet("flaky://{warehouse}/in/ds={date}/*.parquet",
                            storage_options={"state_dir": state_dir, **store})
    return pipeline(name="t_flaky_reads", sources={"src": source},
                    target=Target.merge("t", keys=["k1", "k2"], partition_by=["part"], order_by="ts",
                                        delete_when="op_delete"),
                    schema=SCHEMA, retry=retry)(identity)


def _files(warehouse: str, date: str) -> list[str]:
    folder = os.path.join(warehouse, "in", f"ds={date}")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder))


def test_listings_and_reads_failing_twice_are_retried_and_the_run_commits_every_row(client, flaky, warehouse):
    """The listing is retried by the driver as the run is planned, each file's read inside its task."""
    rng = np.random.default_rng(41)
    batch = random_batch(rng, 120, key_space=500)
    write_batch(warehouse, "2026-01-01", batch, files=3)
    p = _pipe(flaky, RetryPolicy(max_attempts=4, **FAST), fail_times=2, fail_listings=2)
    r = etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    assert r.status == "committed" and r.rows_read == len(batch)
    pd.testing.assert_frame_equal(table_frame(f"{warehouse}/t"), oracle([batch]))
    assert _flaky.counted(flaky, _flaky.LISTING, "failures") == 2
    for path in _files(warehouse, "2026-01-01"):  # each worker read failed twice, then succeeded
        assert _flaky.counted(flaky, path, "failures") == 2, path
        assert _flaky.counted(flaky, path, "attempts") >= 3, path
    assert Ledger(warehouse).state("t_flaky_reads", "2026-01-01").state == "succeeded"


def test_a_source_listing_that_keeps_failing_names_the_source_and_creates_no_table(client, flaky, warehouse):
    write_batch(warehouse, "2026-01-01", random_batch(np.random.default_rng(44), 20, key_space=500), files=1)
    p = _pipe(flaky, RetryPolicy(max_attempts=3, **FAST), fail_listings=10**6)
    expected = r"listing of source 'src' at flaky:.*ds=2026-01-01.*after 3 attempts"
    with pytest.raises(etl.SourceError, match=expected) as info:
        etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    assert (info.value.source, info.value.attempts) == ("src", 3)
    assert _flaky.counted(flaky, _flaky.LISTING, "attempts") == 3
    assert not os.path.exists(os.path.join(warehouse, "t"))


def test_a_read_that_keeps_failing_fails_the_run_naming_the_file_after_the_bounded_attempts(client, flaky,
                                                                                             warehouse):
    rng = np.random.default_rng(42)
    first = random_batch(rng, 40, key_space=500)
    write_batch(warehouse, "2026-01-01", first, files=2)
    etl.run(_pipe(flaky, RetryPolicy(max_attempts=3, **FAST)), date="2026-01-01", warehouse=warehouse,
            client=client)
    version, before = DeltaTable(f"{warehouse}/t").version(), table_frame(f"{warehouse}/t")

    write_batch(warehouse, "2026-01-02", random_batch(rng, 40, key_space=500, ts0=1_000), files=2)
    p = _pipe(flaky, RetryPolicy(max_attempts=3, **FAST), fail_times=10**6, fail_match="ds=2026-01-02/part-1")
    with pytest.raises(etl.SourceError) as info:
        etl.run(p, date="2026-01-02", warehouse=warehouse, client=client)
    bad, good = _files(warehouse, "2026-01-02")[1], _files(warehouse, "2026-01-02")[0]
    assert "ds=2026-01-02/part-1.parquet" in str(info.value) and "after 3 attempts" in str(info.value)
    assert "ConnectionResetError" in str(info.value) and info.value.exit_code == 5
    assert _flaky.counted(flaky, bad, "failures") == 3  # bounded: exactly max_attempts tries, no more
    assert _flaky.counted(flaky, good, "failures") == 0
    assert DeltaTable(f"{warehouse}/t").version() == version
    pd.testing.assert_frame_equal(table_frame(f"{warehouse}/t"), before)
    state = Ledger(warehouse).state("t_flaky_reads", "2026-01-02")
    assert state.state == "failed" and state.error_class == "SourceError"


def test_fetch_retries_with_bounded_jittered_backoff_and_gives_up(tmp_path):
    """The retry loop itself, on the real flaky store in this process, with an injected sleep."""
    _flaky.register()
    state = tmp_path / "state"
    state.mkdir()
    path = tmp_path / "f.csv"
    path.write_bytes(b"a\n1\n")
    policy = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=1.0)
    waits: list[float] = []
    opts = {"state_dir": str(state), "fail_times": 3, "workers_only": False}
    assert fetch(f"flaky://{path}", opts, policy, sleep=waits.append, rng=random.Random(7)) == b"a\n1\n"
    assert len(waits) == 3 and all(0 <= w <= policy.cap(i) for i, w in enumerate(waits))
    assert _flaky.counted(str(state), str(path), "failures") == 3

    waits.clear()
    other = tmp_path / "g.csv"
    other.write_bytes(b"a\n2\n")
    with pytest.raises(etl.SourceError, match="after 5 attempts") as info:
        fetch(f"flaky://{other}", {**opts, "fail_times": 99}, policy, sleep=waits.append, rng=random.Random(7))
    assert info.value.attempts == 5 and str(other) in info.value.file
    assert len(waits) == 4 and _flaky.counted(str(state), str(other), "failures") == 5

    waits.clear()
    with pytest.raises(etl.SourceError, match="FileNotFoundError") as info:  # permanent: one try, no wait
        fetch(str(tmp_path / "missing.csv"), None, policy, sleep=waits.append)
    assert info.value.attempts == 1 and waits == []
