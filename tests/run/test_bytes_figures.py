"""Bytes read and written by a run: from its sources, from its table, to its table; in the result and metrics."""

from __future__ import annotations

import glob
import os

import numpy as np
from deltalake import DeltaTable
from prometheus_client.parser import text_string_to_metric_families

import etl
from etl.observe.metrics import prometheus_text
from tests.core.helpers import make_pipeline, random_batch, write_batch


def _sizes(paths) -> int:
    return sum(os.path.getsize(p) for p in paths)


def _live(url: str) -> dict:
    """The table's live files and their sizes on disk."""
    paths = [u.replace("file://", "") for u in DeltaTable(url).file_uris()]
    return {os.path.relpath(p, url): os.path.getsize(p) for p in paths}


def test_bytes_read_and_written_are_the_files_the_run_touched(client, warehouse):
    p, url = make_pipeline("bytes_fig"), f"{warehouse}/t"
    rng = np.random.default_rng(3)
    write_batch(warehouse, "2026-01-01", random_batch(rng, 120, key_space=80, delete_frac=0))
    first = etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    inputs = glob.glob(f"{warehouse}/in/ds=2026-01-01/*.parquet")
    before = _live(url)
    assert first.stages["source_bytes_read"] == _sizes(inputs)
    assert first.stages["table_bytes_read"] == 0  # an empty table: nothing to read
    assert first.stages["bytes_written"] == sum(before.values()) > 0

    write_batch(warehouse, "2026-01-02", random_batch(rng, 60, key_space=80, ts0=10_000, delete_frac=0.2))
    second = etl.run(p, date="2026-01-02", warehouse=warehouse, client=client)
    after = _live(url)
    removed = {f: s for f, s in before.items() if f not in after}
    added = {f: s for f, s in after.items() if f not in before}
    assert removed and added
    assert second.stages["bytes_written"] == sum(added.values())
    # every rewritten file was read whole; nothing beyond the table's files was
    assert sum(removed.values()) <= second.stages["table_bytes_read"] <= sum(before.values())
    # a local table: every file located to hold keys went to the OS read-ahead before its rewrite read it
    assert second.stages["table_bytes_prefetched"] == second.stages["table_bytes_read"] > 0

    samples = {s.labels["kind"]: s.value for fam in text_string_to_metric_families(prometheus_text(second))
               if fam.name == "etl_run_bytes" for s in fam.samples}
    assert samples == {"source_read": second.stages["source_bytes_read"],
                       "table_read": second.stages["table_bytes_read"], "written": second.stages["bytes_written"]}
    assert "bytes read/written" in str(second)
