"""MERGE on a real LocalCluster against a pandas oracle: duplicates, nulls, new partitions, moves, deletes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import etl
from tests.core.helpers import (data_files_on_disk, live_files, make_pipeline, oracle, random_batch,
                                table_frame, write_batch)


@pytest.mark.parametrize("route", ["broadcast", "in_memory", "streamed"])
def test_sequence_of_batches_equals_pandas_oracle(client, warehouse, route, monkeypatch):
    """The three ways rows reach the apply tasks: broadcast (small batches), slices of the batch held
    in memory (large ones), a p2p shuffle of a batch streamed from its source (too large for memory)."""
    import importlib

    stage = importlib.import_module("etl.run.stage")  # ``etl.run`` is also the run function
    runner = importlib.import_module("etl.run.runner")
    if route != "broadcast":
        monkeypatch.setattr(stage, "BROADCAST_ROWS", 0)
    if route == "streamed":
        monkeypatch.setattr(runner, "fits_in_memory", lambda source_bytes, memory: False)
    rng = np.random.default_rng(7)
    p = make_pipeline()
    batches = []
    for day in range(1, 5):
        batch = random_batch(rng, 150, parts=3 + day, ts0=day * 1000)  # later days reach new partitions
        write_batch(warehouse, f"2026-01-0{day}", batch)
        batches.append(batch)
        result = etl.run(p, date=f"2026-01-0{day}", warehouse=warehouse, client=client)
        assert result.status == "committed"
        assert result.stages["batch"] == ("streamed" if route == "streamed" else "in_memory")
        got = table_frame(f"{warehouse}/t")
        want = oracle(batches)
        pd.testing.assert_frame_equal(got, want)
        assert not got.duplicated(["k1", "k2"]).any()
    # every live file exists; no file of the table is both live and missing
    assert live_files(f"{warehouse}/t") <= data_files_on_disk(f"{warehouse}/t")


def test_counts_add_up(client, warehouse):
    rng = np.random.default_rng(3)
    p = make_pipeline()
    first = random_batch(rng, 100, delete_frac=0.0)
    write_batch(warehouse, "2026-01-01", first)
    r1 = etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    distinct = first.drop_duplicates(["k1", "k2"]).shape[0]
    assert (r1.inserted, r1.updated, r1.deleted) == (distinct, 0, 0)
    assert r1.duplicates_dropped == len(first) - distinct
    assert r1.rows_read == r1.rows_in == len(first)

    table = table_frame(f"{warehouse}/t")
    second = table.head(10).assign(v=999.0, ts=10_000 + np.arange(10), op_delete=False)
    absent = table.iloc[[16]].assign(k1=int(table.k1.max()) + 1, ts=40_000, op_delete=True)  # no such key
    second = pd.concat([second, table.iloc[10:13].assign(ts=20_000, op_delete=True),
                        table.iloc[13:16].assign(ts=30_000, op_delete=False), absent], ignore_index=True)
    write_batch(warehouse, "2026-01-02", second, files=1)
    r2 = etl.run(p, date="2026-01-02", warehouse=warehouse, client=client)
    # rows 13..15 differ only by ts, which is a column: they are updates too; the absent key's
    # delete is neither a delete nor an insert, and is reported as such
    assert (r2.updated, r2.deleted, r2.inserted, r2.delete_not_found) == (13, 3, 0, 1)
    assert ("deletes not found", "1") in r2.summary_rows()
    assert len(table_frame(f"{warehouse}/t")) == len(table) - 3


def test_identical_update_rewrites_nothing(client, warehouse):
    rng = np.random.default_rng(11)
    p = make_pipeline()
    first = random_batch(rng, 80, delete_frac=0.0)
    write_batch(warehouse, "2026-01-01", first)
    etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    before = live_files(f"{warehouse}/t")
    same = table_frame(f"{warehouse}/t").assign(op_delete=False)
    write_batch(warehouse, "2026-01-02", same)
    r = etl.run(p, date="2026-01-02", warehouse=warehouse, client=client)
    assert (r.updated, r.inserted, r.unchanged, r.files_added, r.files_removed) == (0, 0, len(same), 0, 0)
    assert live_files(f"{warehouse}/t") == before


def test_key_moving_to_another_partition_leaves_one_row(client, warehouse):
    p = make_pipeline()
    base = pd.DataFrame({"k1": [1, 2], "k2": ["a", "a"], "part": ["p0", "p0"], "v": [1.0, 2.0],
                         "s": ["x", "y"], "ts": [1, 1], "op_delete": [False, False]})
    write_batch(warehouse, "2026-01-01", base, files=1)
    etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    moved = base.iloc[[0]].assign(part="p9", ts=2)
    write_batch(warehouse, "2026-01-02", moved, files=1)
    r = etl.run(p, date="2026-01-02", warehouse=warehouse, client=client)
    got = table_frame(f"{warehouse}/t")
    assert r.updated == 1
    assert got[["k1", "part"]].values.tolist() == [[1, "p9"], [2, "p0"]]


def test_duplicate_keys_without_order_by_are_refused(client, warehouse):
    p = make_pipeline(order_by=None)
    dup = pd.DataFrame({"k1": [1, 1], "k2": ["a", "a"], "part": ["p0", "p0"], "v": [1.0, 2.0],
                        "s": ["x", "y"], "ts": [1, 2], "op_delete": [False, False]})
    write_batch(warehouse, "2026-01-01", dup, files=2)
    with pytest.raises(etl.DuplicateKeyError, match="order_by") as info:
        etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    assert info.value.examples == [{"k1": 1, "k2": "a"}]
    assert data_files_on_disk(f"{warehouse}/t") == set()  # nothing staged survives, nothing committed


def test_latest_rows_tied_on_order_by_are_refused(client, warehouse):
    p = make_pipeline()
    tie = pd.DataFrame({"k1": [1, 1], "k2": ["a", "a"], "part": ["p0", "p0"], "v": [1.0, 2.0],
                        "s": ["x", "y"], "ts": [5, 5], "op_delete": [False, False]})
    write_batch(warehouse, "2026-01-01", tie, files=2)
    with pytest.raises(etl.DuplicateKeyError, match="tie on 'ts'"):
        etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)


def test_append_and_overwrite_modes(client, warehouse):
    rng = np.random.default_rng(5)
    batch = random_batch(rng, 60).drop(columns="op_delete")
    write_batch(warehouse, "2026-01-01", batch)
    app = make_pipeline("t_append", mode="append", table="a", keys=(), order_by=None, delete_when=None)
    etl.run(app, date="2026-01-01", warehouse=warehouse, client=client)
    assert etl.run(app, date="2026-01-01", warehouse=warehouse, client=client).status == "skipped"
    assert len(table_frame(f"{warehouse}/a")) == len(batch)

    ow = make_pipeline("t_over", mode="overwrite", table="o", keys=(), order_by=None, delete_when=None)
    etl.run(ow, date="2026-01-01", warehouse=warehouse, client=client)
    only_p0 = batch[batch.part == "p0"].assign(v=-1.0)
    write_batch(warehouse, "2026-01-02", only_p0, files=1)
    r = etl.run(ow, date="2026-01-02", warehouse=warehouse, client=client)
    got = table_frame(f"{warehouse}/o")
    assert r.deleted == int((batch.part == "p0").sum())
    assert (got[got.part == "p0"].v == -1.0).all() and len(got[got.part == "p0"]) == len(only_p0)
    assert len(got[got.part != "p0"]) == int((batch.part != "p0").sum())


def test_batches_committed_out_of_order_give_the_same_table(client, tmp_path_factory):
    """With order_by, an older batch applied after a newer one changes nothing it should not."""
    rng = np.random.default_rng(21)
    batches = [random_batch(rng, 120, key_space=40, ts0=i * 1000, delete_frac=0.0) for i in range(3)]
    tables = []
    for order in ([0, 1, 2], [2, 0, 1]):
        warehouse = str(tmp_path_factory.mktemp("wh"))
        for i in order:
            write_batch(warehouse, f"2026-01-0{i + 1}", batches[i])
            etl.run(make_pipeline(), date=f"2026-01-0{i + 1}", warehouse=warehouse, client=client)
        tables.append(table_frame(f"{warehouse}/t"))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], oracle(batches))


def test_key_hash_collisions_cost_time_never_correctness(tmp_path, monkeypatch):
    """Every key hashing alike: rows still meet only their own key (the exact join takes over)."""
    import pyarrow as pa

    import etl.commit.merge as merge
    from etl.commit.files import FileRef
    from etl.io.storage import Location

    schema = pa.schema([pa.field("k", pa.int64(), nullable=False), pa.field("v", pa.string())])
    spec = merge.MergeSpec(Location(str(tmp_path)), schema, ("k",), run_id="r1")
    add, = merge.write_rows(spec, pa.table({"k": [1, 2, 3], "v": ["a", "b", "c"]}, schema=schema))
    ref = FileRef(add["path"], (), add["size"], add["num_records"])
    real = merge.hash_table
    monkeypatch.setattr(merge, "hash_table", lambda t, cols: np.zeros(t.num_rows, np.uint64)
                        if cols == ["k"] else real(t, cols))
    res = merge.merge_group(spec, pa.table({"k": [2, 4], "v": ["B", "d"]}, schema=schema), [ref])
    assert (res.counts["updated"], res.counts["inserted"], res.counts["unchanged"]) == (1, 1, 0)
    new, = res.adds
    got = pa.parquet.read_table(tmp_path / new["path"]).sort_by("k").to_pydict()
    assert got == {"k": [1, 2, 3, 4], "v": ["a", "B", "c", "d"]}
