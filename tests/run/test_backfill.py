"""Backfills: batches, resume from the ledger, status/history/verify, on a real LocalCluster."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from click.testing import CliRunner
from deltalake import DeltaTable

import etl
from etl.cli import cli
from etl.ledger.store import Ledger
from etl.run.backfill import backfill
from tests.core.helpers import make_pipeline, oracle, random_batch, table_frame, write_batch

PIPE = "from tests.core.helpers import make_pipeline\np = make_pipeline('t_bf')\n"


def _days(warehouse, n, seed=0):
    rng = np.random.default_rng(seed)
    batches = []
    for i in range(n):
        b = random_batch(rng, 40, ts0=i * 1000, delete_frac=0.0)
        write_batch(warehouse, f"2026-01-{i + 1:02d}", b, files=1)
        batches.append(b)
    return batches


def test_backfill_batches_commit_once_and_resume_skips_them(client, warehouse):
    batches = _days(warehouse, 5)
    p = make_pipeline("t_bf")
    first = backfill(p, "2026-01-01", "2026-01-05", batch_size="2d", concurrency=2, warehouse=warehouse,
                     client=client)
    assert first.ok and [b.id for b in first.batches] == ["2026-01-01..2026-01-02", "2026-01-03..2026-01-04",
                                                          "2026-01-05"]
    assert {r.status for r in first.results.values()} == {"committed"}
    pd.testing.assert_frame_equal(table_frame(f"{warehouse}/t"), oracle(batches))
    version = DeltaTable(f"{warehouse}/t").version()
    again = backfill(p, "2026-01-01", "2026-01-05", batch_size="2d", warehouse=warehouse, client=client)
    assert [b.action for b in again.batches] == ["skip"] * 3 and not again.results
    assert DeltaTable(f"{warehouse}/t").version() == version
    states = {s.batch: s for s in Ledger(warehouse).batches("t_bf")}
    assert {s.state for s in states.values()} == {"succeeded"}
    assert states["2026-01-05"].rows["rows_in"] == 40 and states["2026-01-05"].version is not None


def test_failed_batch_is_recorded_and_redone_with_reprocess_failed(client, warehouse, tmp_path):
    batches = _days(warehouse, 3, seed=1)
    bad = batches[1].assign(k1=pd.array([None] * len(batches[1]), dtype="Int64"))  # null keys: permanent
    write_batch(warehouse, "2026-01-02", bad, files=1)
    p = make_pipeline("t_bf")
    r = backfill(p, "2026-01-01", "2026-01-03", warehouse=warehouse, client=client)
    assert set(r.errors) == {"2026-01-02"} and isinstance(r.errors["2026-01-02"], etl.SchemaError)
    assert "--reprocess failed" in r.resume_command
    states = {s.batch: s.state for s in Ledger(warehouse).batches("t_bf")}
    assert states == {"2026-01-01": "succeeded", "2026-01-02": "failed", "2026-01-03": "succeeded"}
    write_batch(warehouse, "2026-01-02", batches[1], files=1)  # the operator fixes the input
    skipped = backfill(p, "2026-01-01", "2026-01-03", warehouse=warehouse, client=client)
    assert [b.action for b in skipped.batches] == ["skip", "skip", "skip"]
    fixed = backfill(p, "2026-01-01", "2026-01-03", reprocess="failed", warehouse=warehouse, client=client)
    assert fixed.ok and list(fixed.results) == ["2026-01-02"]
    pd.testing.assert_frame_equal(table_frame(f"{warehouse}/t"), oracle(batches))


def test_cli_backfill_status_history_verify(client, warehouse, tmp_path):
    _days(warehouse, 2, seed=2)
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "bf.py").write_text(PIPE)
    base = ["--pipelines", str(tmp_path / "pipes")]
    dry = CliRunner().invoke(cli, [*base, "backfill", "t_bf", "--start", "2026-01-01", "--end", "2026-01-02",
                                   "--warehouse", warehouse, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.output)
    assert [b["batch"] for b in planned["batches"]] == ["2026-01-01", "2026-01-02"]
    assert planned["reads"][0]["sources"][0]["files"] == 1
    assert not (tmp_path / "warehouse" / "t").exists() and DeltaTable.is_deltatable(f"{warehouse}/t") is False
    run = CliRunner().invoke(cli, [*base, "backfill", "t_bf", "--start", "2026-01-01", "--end", "2026-01-02",
                                   "--warehouse", warehouse, "--json"])
    assert run.exit_code == 0, run.output
    st = CliRunner().invoke(cli, [*base, "status", "t_bf", "--warehouse", warehouse, "--json"])
    assert {r["state"] for r in json.loads(st.output)} == {"succeeded"}
    hist = CliRunner().invoke(cli, [*base, "history", "t_bf", "--warehouse", warehouse, "--json"])
    assert [r["status"] for r in json.loads(hist.output)] == ["succeeded", "succeeded"]
    ver = CliRunner().invoke(cli, [*base, "verify", "t_bf", "--warehouse", warehouse, "--json"])
    assert ver.exit_code == 0, ver.output
    assert json.loads(ver.output)["ok"] is True
