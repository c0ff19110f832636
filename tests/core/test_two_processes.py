"""Two driver processes merging into one table at once, through the real scheduler."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
from deltalake import DeltaTable

import etl
from tests.core.helpers import make_pipeline, oracle, random_batch, table_frame, write_batch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_two_processes_merge_into_one_table(client, warehouse, tmp_path):
    rng = np.random.default_rng(9)
    base = random_batch(rng, 100, key_space=30, delete_frac=0.0)
    write_batch(warehouse, "2026-01-01", base)
    etl.run(make_pipeline(), date="2026-01-01", warehouse=warehouse, client=client)
    b2 = random_batch(rng, 60, key_space=30, ts0=10_000, delete_frac=0.0)
    b3 = random_batch(rng, 60, key_space=30, ts0=20_000, delete_frac=0.0)
    write_batch(warehouse, "2026-01-02", b2)
    write_batch(warehouse, "2026-01-03", b3)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": ROOT}
    procs = [subprocess.Popen([sys.executable, "-m", "tests.core._writer", warehouse, d,
                               client.scheduler.address, str(barrier)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for d in ("2026-01-02", "2026-01-03")]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "STATUS committed" in out
    assert any("RECOMPUTED 1" in out for out, _ in outs)  # the loser reloaded and redid its merge
    assert DeltaTable(f"{warehouse}/t").version() == 3
    got = table_frame(f"{warehouse}/t")
    pd.testing.assert_frame_equal(got, oracle([base, b2, b3]))
    assert not got.duplicated(["k1", "k2"]).any()
