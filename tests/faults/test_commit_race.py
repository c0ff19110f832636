"""A commit that loses a race and is recomputed: its lineage must describe what it committed.

Two driver processes stage against the same snapshot and meet before
committing; the second to commit reloads, finds that the first touched its
keys, and redoes its merge. The row counts its commit records (``etl.rows`` in
the Delta history) must be those of the redone merge, which the ledger records,
or ``etl verify`` reports the table and the ledger as disagreeing.
"""

from __future__ import annotations

import json

import numpy as np
from deltalake import DeltaTable

import etl
from etl.ledger.store import Ledger
from tests.core.helpers import make_pipeline, oracle, random_batch, write_batch
from tests.faults._faults import assert_each_once, assert_sound, day, finish, spawn, verify_report

COUNTS = ("inserted", "updated", "deleted", "unchanged", "stale")


def test_recomputed_commit_records_the_counts_it_committed(client, warehouse, tmp_path):
    rng = np.random.default_rng(8)
    p, url = make_pipeline(), f"{warehouse}/t"
    base = random_batch(rng, 40, key_space=20, delete_frac=0.0)
    # keys 20..39 are new to the table and in both batches: the second commit's counts depend on the first
    b2 = random_batch(rng, 60, key_space=40, ts0=10_000, delete_frac=0.0)
    b3 = random_batch(rng, 60, key_space=40, ts0=20_000, delete_frac=0.0)
    for i, b in enumerate((base, b2, b3), 1):
        write_batch(warehouse, day(i), b)
    etl.run(p, date=day(1), warehouse=warehouse, client=client)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [spawn("tests.faults._driver", warehouse, d, client.scheduler.address, "meet", str(barrier))
             for d in (day(2), day(3))]
    outs = [finish(proc) for proc in procs]
    for code, out, err in outs:
        assert code == 0 and "STATUS committed" in out, err[-3000:]
    assert sorted(out.split()[-1] for _, out, _ in outs) == ["0", "1"]  # one of them recomputed
    assert_sound(url, oracle([base, b2, b3]))
    assert_each_once(url, [day(1), day(2), day(3)])

    in_ledger = {s.run_id: s.rows for s in Ledger(warehouse).history(p.name) if s.state == "succeeded"}
    for h in DeltaTable(url).history():
        if h.get("etl.app_id"):
            committed = json.loads(h["etl.rows"])
            assert {k: committed[k] for k in COUNTS} == {k: in_ledger[h["etl.run_id"]][k] for k in COUNTS}, \
                f"the commit of {h['etl.batch']} records other counts than its run committed"
    report = verify_report(warehouse, p)
    assert report.ok, [f.message for f in report.findings]
