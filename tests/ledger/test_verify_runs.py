"""``etl verify``'s content check on tables written by real runs: every commit records its fingerprint delta.

A MERGE rewrites whole files but changes only some rows; its commit records
the row hashes it adds minus those it removes, so the deltas of all commits add
up to the fingerprint of the table's rows, whatever the write mode. A change
made outside the recorded commits shows as a mismatch.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake

import etl
from etl.ledger import read_table_facts, verify
from etl.ledger.store import Ledger
from tests.core.helpers import SCHEMA, make_pipeline, random_batch, write_batch


def _report(warehouse: str, p):
    facts = read_table_facts(f"{warehouse}/{p.target.table}", columns=p.table_schema.names)
    return verify(p.name, Ledger(warehouse).history(p.name), facts.history, table_fingerprint=facts.fingerprint)


def _commit_deltas(url: str) -> dict:
    return {h["version"]: h.get("etl.fingerprint_delta") for h in DeltaTable(url).history() if "etl.batch" in h}


@pytest.mark.parametrize("mode", ["merge", "append", "overwrite"])
def test_the_recorded_deltas_add_up_to_the_table_after_every_run(client, warehouse, mode):
    rng = np.random.default_rng({"merge": 1, "append": 2, "overwrite": 3}[mode])
    p = make_pipeline(f"fp_{mode}", mode=mode)
    url = f"{warehouse}/t"
    for i in range(1, 4):  # updates, deletes, stale rows, new partitions, a partition overwritten
        batch = random_batch(rng, 80, key_space=50, parts=2 + i, ts0=1000 * i)
        if mode != "merge":
            batch = batch.drop(columns="op_delete")
        write_batch(warehouse, f"2026-01-0{i}", batch)
        result = etl.run(p, date=f"2026-01-0{i}", warehouse=warehouse, client=client)
        assert result.status == "committed" and result.fingerprint_delta is not None
        report = _report(warehouse, p)
        assert not report.errors and not any(f.kind == "unverifiable" for f in report.findings), report.findings
        assert report.expected_fingerprint is not None
        assert report.expected_fingerprint == report.table_fingerprint % 2**64
        assert _commit_deltas(url)[result.version] == result.fingerprint_delta
        state = Ledger(warehouse).state(p.name, f"2026-01-0{i}")
        assert state.fingerprint == result.fingerprint_delta


def test_a_change_outside_the_recorded_commits_is_a_mismatch(client, warehouse):
    p, url = make_pipeline("fp_tamper"), f"{warehouse}/t"
    write_batch(warehouse, "2026-01-01", random_batch(np.random.default_rng(7), 60, delete_frac=0))
    etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    dt = DeltaTable(url)
    row = dt.to_pandas().head(1)
    row["v"] = 123.0  # a second copy of a key, with another value, by a foreign writer
    write_deltalake(dt, row[SCHEMA.names].astype({"k2": "string", "part": "string", "s": "string"}),
                    mode="append")
    report = _report(warehouse, p)
    assert [f.kind for f in report.errors] == ["fingerprint_mismatch"]
    assert "foreign_commit" in [f.kind for f in report.findings]


def test_a_rerun_that_repairs_a_lost_ledger_record_takes_the_delta_from_the_commit(client, warehouse):
    """The driver died after its commit, before the ledger heard of it: the rerun skips the batch
    and records the success with the delta the commit carries, so the content stays verifiable."""
    p = make_pipeline("fp_repair")
    write_batch(warehouse, "2026-01-01", random_batch(np.random.default_rng(8), 60))
    first = etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    ledger = Ledger(warehouse)
    rows = ledger.history(p.name)
    assert rows and rows[-1].fingerprint == first.fingerprint_delta
    # forget the run: a fresh warehouse ledger beside the same table
    shutil.rmtree(f"{warehouse}/_etl_ledger", ignore_errors=True)
    assert Ledger(warehouse).state(p.name, "2026-01-01") is None
    again = etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    assert again.status == "skipped"
    assert Ledger(warehouse).state(p.name, "2026-01-01").fingerprint == first.fingerprint_delta
    report = _report(warehouse, p)
    assert report.ok and report.expected_fingerprint == report.table_fingerprint % 2**64, report.findings


def test_an_unchanged_rerun_with_force_records_no_content_change(client, warehouse):
    p = make_pipeline("fp_force")
    batch = random_batch(np.random.default_rng(9), 40, delete_frac=0)
    write_batch(warehouse, "2026-01-01", batch)
    etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    before = pd.Series(read_table_facts(f"{warehouse}/t", columns=SCHEMA.names).fingerprint)
    forced = etl.run(p, date="2026-01-01", warehouse=warehouse, client=client, force=True)
    assert forced.files_added == 0 and forced.updated == 0  # identical rows rewrite nothing
    assert pd.Series(read_table_facts(f"{warehouse}/t", columns=SCHEMA.names).fingerprint).equals(before)
    assert _report(warehouse, p).ok
