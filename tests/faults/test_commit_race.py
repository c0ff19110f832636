"""A commit that loses a race and is recomputed: its lineage must describe what it committed.

Two runs stage against the same snapshot and meet before committing; the
second to commit reloads, finds that the first touched its keys, and redoes its
merge. The row counts its commit records (``etl.rows`` in the Delta history)
must be those of the redone merge, which the ledger records, or ``etl verify``
reports the table and the ledger as disagreeing.
"""

from __future__ import annotations

import json
import threading

import numpy as np
from deltalake import DeltaTable

import etl
from tests.core.helpers import make_pipeline, oracle, random_batch, write_batch
from tests.faults._faults import assert_each_once, assert_sound, day, verify_report

COUNTS = ("inserted", "updated", "deleted", "unchanged", "stale")


def test_recomputed_commit_records_the_counts_it_committed(client, warehouse):
    rng = np.random.default_rng(8)
    p, url = make_pipeline(), f"{warehouse}/t"
    base = random_batch(rng, 40, key_space=20, delete_frac=0.0)
    # keys 20..39 are new to the table and in both batches: the second commit's counts depend on the first
    b2 = random_batch(rng, 60, key_space=40, ts0=10_000, delete_frac=0.0)
    b3 = random_batch(rng, 60, key_space=40, ts0=20_000, delete_frac=0.0)
    for i, b in enumerate((base, b2, b3), 1):
        write_batch(warehouse, day(i), b)
    etl.run(p, date=day(1), warehouse=warehouse, client=client)
    barrier, results = threading.Barrier(2, timeout=120), {}

    def meet_once(point, seen=threading.local()):
        if point == "before_commit" and not getattr(seen, "done", False):
            seen.done = True
            barrier.wait()

    def go(date):
        results[date] = etl.run(p, date=date, warehouse=warehouse, client=client, hook=meet_once)

    threads = [threading.Thread(target=go, args=(d,)) for d in (day(2), day(3))]
    [t.start() for t in threads]
    [t.join(300) for t in threads]
    assert sorted(r.recomputed for r in results.values()) == [0, 1]
    assert_sound(url, oracle([base, b2, b3]))
    assert_each_once(url, [day(1), day(2), day(3)])
    recorded = {h["etl.run_id"]: json.loads(h["etl.rows"]) for h in DeltaTable(url).history()
                if h.get("etl.app_id")}
    for r in results.values():
        assert {k: recorded[r.run_id][k] for k in COUNTS} == {k: getattr(r, k) for k in COUNTS}, \
            f"commit of {r.batch} (recomputed {r.recomputed}x) records other counts than it committed"
    report = verify_report(warehouse, p)
    assert report.ok, [f.message for f in report.findings]
