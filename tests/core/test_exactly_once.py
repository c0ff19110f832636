"""Idempotent reruns and the exactly-once commit protocol, with faults injected for real."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import etl
from etl.commit.cleanup import find_orphans, take_lease
from etl.io.storage import Location
from tests.core.helpers import (data_files_on_disk, live_files, make_pipeline, oracle, random_batch,
                                table_frame, write_batch)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 10_000), n0=st.integers(1, 120), n1=st.integers(1, 120),
       force=st.booleans())
def test_applying_a_batch_twice_equals_applying_it_once(client, tmp_path_factory, seed, n0, n1, force):
    warehouse = str(tmp_path_factory.mktemp("wh"))
    rng = np.random.default_rng(seed)
    p = make_pipeline()
    b0, b1 = random_batch(rng, n0, ts0=0), random_batch(rng, n1, ts0=10_000)
    write_batch(warehouse, "2026-01-01", b0)
    write_batch(warehouse, "2026-01-02", b1)
    etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    once = etl.run(p, date="2026-01-02", warehouse=warehouse, client=client)
    after_once, files_once = table_frame(f"{warehouse}/t"), live_files(f"{warehouse}/t")
    again = etl.run(p, date="2026-01-02", warehouse=warehouse, client=client, force=force)
    pd.testing.assert_frame_equal(table_frame(f"{warehouse}/t"), after_once)
    pd.testing.assert_frame_equal(after_once, oracle([b0, b1]))
    assert live_files(f"{warehouse}/t") == files_once  # no data rewritten
    if force:
        assert again.status == "committed" and (again.files_added, again.files_removed) == (0, 0)
    else:
        assert again.status == "skipped" and again.version == once.version
        assert DeltaTable(f"{warehouse}/t").version() == once.version


def test_commit_that_lands_while_the_caller_sees_an_error_is_not_repeated(client, warehouse):
    rng = np.random.default_rng(1)
    p = make_pipeline()
    batch = random_batch(rng, 100)
    write_batch(warehouse, "2026-01-01", batch)
    calls = []

    def lost_response(point):
        calls.append(point)
        if point == "after_commit" and calls.count("after_commit") == 1:
            raise OSError("connection reset after the commit was written")

    r = etl.run(p, date="2026-01-01", warehouse=warehouse, client=client, hook=lost_response)
    assert calls.count("before_commit") == 1  # the retry found the txn and did not commit again
    assert r.status == "committed" and r.attempts == 2
    dt = DeltaTable(f"{warehouse}/t")
    assert dt.version() == 1  # create (0) + exactly one data commit
    pd.testing.assert_frame_equal(table_frame(f"{warehouse}/t"), oracle([batch]))
    assert data_files_on_disk(f"{warehouse}/t") == live_files(f"{warehouse}/t")
    # and a rerun from scratch skips it
    assert etl.run(p, date="2026-01-01", warehouse=warehouse, client=client).status == "skipped"


def test_failed_run_leaves_table_unchanged_and_no_staged_files(client, warehouse):
    rng = np.random.default_rng(2)
    p = make_pipeline()
    first = random_batch(rng, 50)
    write_batch(warehouse, "2026-01-01", first)
    etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    files = data_files_on_disk(f"{warehouse}/t")
    write_batch(warehouse, "2026-01-02", random_batch(rng, 50, ts0=1000))

    def crash(point):
        if point == "before_commit":
            raise RuntimeError("driver dies between staging and commit")

    with pytest.raises(RuntimeError, match="driver dies"):
        etl.run(p, date="2026-01-02", warehouse=warehouse, client=client, hook=crash)
    assert DeltaTable(f"{warehouse}/t").version() == 1
    assert data_files_on_disk(f"{warehouse}/t") == files
    pd.testing.assert_frame_equal(table_frame(f"{warehouse}/t"), oracle([first]))


def test_concurrent_writers_both_land_without_lost_update(client, warehouse):
    """Two runs stage against the same snapshot, then both commit: one must reload and recompute."""
    rng = np.random.default_rng(4)
    p = make_pipeline()
    base = random_batch(rng, 120, key_space=40, delete_frac=0.0)
    write_batch(warehouse, "2026-01-01", base)
    etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    # upserts only: without tombstones, a delete followed by an older upsert of the key revives it
    b2 = random_batch(rng, 80, key_space=40, ts0=10_000, delete_frac=0.0)
    b3 = random_batch(rng, 80, key_space=40, ts0=20_000, delete_frac=0.0)
    write_batch(warehouse, "2026-01-02", b2)
    write_batch(warehouse, "2026-01-03", b3)
    barrier = threading.Barrier(2, timeout=120)

    def meet_once(point, seen=threading.local()):
        if point == "before_commit" and not getattr(seen, "done", False):
            seen.done = True
            barrier.wait()

    results = {}

    def go(date):
        results[date] = etl.run(p, date=date, warehouse=warehouse, client=client, hook=meet_once)

    threads = [threading.Thread(target=go, args=(d,)) for d in ("2026-01-02", "2026-01-03")]
    [t.start() for t in threads]
    [t.join(300) for t in threads]
    assert {r.status for r in results.values()} == {"committed"}
    assert sum(r.recomputed for r in results.values()) >= 1
    assert DeltaTable(f"{warehouse}/t").version() == 3
    # whichever committed first, later ts wins per key: the oracle over all batches
    pd.testing.assert_frame_equal(table_frame(f"{warehouse}/t"), oracle([base, b2, b3]))
    assert live_files(f"{warehouse}/t") <= data_files_on_disk(f"{warehouse}/t")


def test_clean_removes_orphans_but_never_files_a_live_run_may_commit(client, warehouse):
    rng = np.random.default_rng(6)
    p = make_pipeline()
    write_batch(warehouse, "2026-01-01", random_batch(rng, 40))
    etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    root = Location(f"{warehouse}/t")
    dead, alive = "r20260101T000000-0000dead", "r20260101T000000-0000a11e"
    for run in (dead, alive):
        (root_path := f"{warehouse}/t/part=p0").__len__()
        with open(f"{root_path}/part-{run}-{'ab' * 8}.snappy.parquet", "wb") as f:
            f.write(b"PAR1 staged by a killed run")
    take_lease(root, alive)
    orphans = find_orphans(root, grace_seconds=0)
    assert [o.run_id for o in orphans] == [dead]
    from click.testing import CliRunner

    from etl.cli import cli

    out = CliRunner().invoke(cli, ["clean", f"{warehouse}/t", "--grace", "0"])
    assert out.exit_code == 0, out.output
    on_disk = data_files_on_disk(f"{warehouse}/t")
    assert not any(dead in f for f in on_disk) and any(alive in f for f in on_disk)
    assert live_files(f"{warehouse}/t") <= on_disk


def test_batch_fingerprint_is_recorded_and_equal_for_equal_content(client, tmp_path_factory):
    """Two runs over the same rows, split into files differently, record the same fingerprint."""
    rng = np.random.default_rng(12)
    batch = random_batch(rng, 90, key_space=10_000, delete_frac=0.0).drop_duplicates(["k1", "k2"])
    prints = []
    for files in (1, 3):
        warehouse = str(tmp_path_factory.mktemp("wh"))
        write_batch(warehouse, "2026-01-01", batch.sample(frac=1.0, random_state=files), files=files)
        r = etl.run(make_pipeline(), date="2026-01-01", warehouse=warehouse, client=client)
        entry = DeltaTable(f"{warehouse}/t").history(1)[0]
        assert entry["etl.fingerprint"] == r.fingerprint and len(r.fingerprint) == 16
        prints.append(r.fingerprint)
    assert prints[0] == prints[1]
    changed = batch.assign(v=batch.v.fillna(0) + 1.0)
    warehouse = str(tmp_path_factory.mktemp("wh"))
    write_batch(warehouse, "2026-01-01", changed)
    assert etl.run(make_pipeline(), date="2026-01-01", warehouse=warehouse, client=client).fingerprint != prints[0]
