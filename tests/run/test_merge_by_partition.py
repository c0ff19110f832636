"""A dense MERGE batch grouped by table partition, without a locate pass; and its fall back to
located keys when a key moved partition. Real LocalCluster, real Delta tables, a pandas oracle."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

import etl
from tests.core.helpers import data_files_on_disk, live_files, make_pipeline, oracle, table_frame, write_batch

stage = importlib.import_module("etl.run.stage")  # ``etl.run`` is also the run function


def _batch(rng, keys: np.ndarray, ts0: int, delete_frac: float = 0.0) -> pd.DataFrame:
    """Rows whose partition follows from the key (``k1 % 5``): no key ever changes partition."""
    n = len(keys)
    s = np.array([f"s{x}" for x in rng.integers(0, 5, n)], dtype=object)
    s[rng.random(n) < 0.2] = None
    return pd.DataFrame({
        "k1": keys.astype("int64"),
        "k2": pd.array([f"b{x % 2}" for x in keys], dtype="string"),
        "part": pd.array([f"p{x % 5}" for x in keys], dtype="string"),
        "v": rng.normal(size=n).round(3),
        "s": pd.array(s, dtype="string"),
        "ts": (ts0 + rng.permutation(n)).astype("int64"),
        "op_delete": rng.random(n) < delete_frac,
    })


def _table_files(url: str) -> set:
    return {p for p in data_files_on_disk(url) if not p.startswith("_")}


@pytest.mark.parametrize("grouping", ["by partition", "by located key"])
def test_dense_batches_give_the_oracle_table_whichever_way_rows_are_grouped(client, warehouse, grouping,
                                                                          monkeypatch):
    """Updates, inserts, deletes, null values and a new partition, batch after batch."""
    monkeypatch.setattr(stage, "FUSE_ROWS_PER_FILE", 1 if grouping == "by partition" else 10**9)
    monkeypatch.setattr(stage, "SMALL_PARTITION_ROWS", 0)
    rng = np.random.default_rng(5)
    p = make_pipeline()
    batches = []
    for day, (lo, hi, deletes) in enumerate([(0, 400, 0.0), (200, 600, 0.1), (0, 800, 0.2)], start=1):
        keys = rng.permutation(np.arange(lo, hi))
        if day == 3:
            keys = np.concatenate([keys, [1000, 1005]])  # k1 % 5 == 0 ... and a sixth partition below
        batch = _batch(rng, keys, ts0=day * 10_000, delete_frac=deletes)
        if day == 3:
            batch.loc[batch["k1"] >= 1000, "part"] = "p_new"
        write_batch(warehouse, f"2026-02-0{day}", batch)
        batches.append(batch)
        r = etl.run(p, date=f"2026-02-0{day}", warehouse=warehouse, client=client)
        assert r.status == "committed"
        if day > 1:  # the first batch meets an empty table: nothing to group
            assert r.stages["merge_groups"] == grouping
            # every file read to be rewritten was handed to the OS read-ahead first (a local table)
            assert r.stages["table_bytes_prefetched"] == r.stages["table_bytes_read"] > 0
        pd.testing.assert_frame_equal(table_frame(f"{warehouse}/t"), oracle(batches))
    held = set(oracle(batches[:-1])["k1"])
    last = batches[-1]
    assert (r.inserted, r.deleted) == (int((~last["k1"].isin(held) & ~last["op_delete"]).sum()),
                                       int((last["k1"].isin(held) & last["op_delete"]).sum()))
    assert _table_files(f"{warehouse}/t") >= live_files(f"{warehouse}/t")


@pytest.mark.parametrize("to", ["a partition the batch touches", "a partition the batch leaves alone"])
def test_a_key_that_moved_partition_sends_the_batch_back_to_located_keys(client, warehouse, to, monkeypatch):
    """The apply tasks (moving into a touched partition) or the locate tasks running beside them
    (an untouched one) see the key in its old partition: the files staged so far are deleted and the
    batch is located first, leaving one row per key and no orphan file."""
    monkeypatch.setattr(stage, "FUSE_ROWS_PER_FILE", 1)
    rng = np.random.default_rng(9)
    p = make_pipeline()
    first = _batch(rng, np.arange(500), ts0=0)
    write_batch(warehouse, "2026-03-01", first)
    etl.run(p, date="2026-03-01", warehouse=warehouse, client=client)
    before = _table_files(f"{warehouse}/t")

    second = _batch(rng, np.arange(0, 500, 5), ts0=10_000)  # partition p0 only: dense in it
    moved_from = "p1" if to == "a partition the batch touches" else "p3"
    key = 1 if moved_from == "p1" else 3  # lives in p1 / p3; moves to p0
    second = pd.concat([second, _batch(rng, np.array([key]), ts0=20_000).assign(part="p0")], ignore_index=True)
    if to == "a partition the batch touches":  # the batch also writes p1 (not holding key 1's new row)
        second = pd.concat([second, _batch(rng, np.arange(6, 500, 5), ts0=30_000)], ignore_index=True)
    write_batch(warehouse, "2026-03-02", second)
    r = etl.run(p, date="2026-03-02", warehouse=warehouse, client=client)

    assert r.status == "committed" and r.stages["merge_groups"] == "by located key"
    got = table_frame(f"{warehouse}/t")
    pd.testing.assert_frame_equal(got, oracle([first, second]))
    assert got.loc[got["k1"] == key, "part"].tolist() == ["p0"]
    assert _table_files(f"{warehouse}/t") - before <= live_files(f"{warehouse}/t")  # nothing staged is left over


def test_by_partition_only_when_every_touched_partition_is_dense(client, warehouse, monkeypatch):
    """One sparse partition among dense ones sends the whole batch through the locate pass, unless
    that partition is small."""
    monkeypatch.setattr(stage, "FUSE_ROWS_PER_FILE", 50)
    monkeypatch.setattr(stage, "SMALL_PARTITION_ROWS", 0)
    rng = np.random.default_rng(13)
    p = make_pipeline()
    write_batch(warehouse, "2026-04-01", _batch(rng, np.arange(500), ts0=0), files=1)
    etl.run(p, date="2026-04-01", warehouse=warehouse, client=client)  # one file per partition
    dense = _batch(rng, np.arange(0, 400, 5), ts0=10_000)  # 80 rows in p0
    write_batch(warehouse, "2026-04-02", dense, files=1)
    r = etl.run(p, date="2026-04-02", warehouse=warehouse, client=client)
    assert r.stages["merge_groups"] == "by partition" and r.updated == 80
    sparse = pd.concat([_batch(rng, np.arange(0, 400, 5), ts0=20_000), _batch(rng, np.array([2]), ts0=30_000)],
                       ignore_index=True)  # and one row in p2
    write_batch(warehouse, "2026-04-03", sparse, files=1)
    r = etl.run(p, date="2026-04-03", warehouse=warehouse, client=client)
    assert r.stages["merge_groups"] == "by located key" and r.updated == 81
    monkeypatch.setattr(stage, "SMALL_PARTITION_ROWS", 100)  # p2 holds 100 rows
    again = sparse.assign(ts=sparse["ts"] + 100_000)
    write_batch(warehouse, "2026-04-04", again, files=1)
    r = etl.run(p, date="2026-04-04", warehouse=warehouse, client=client)
    assert r.stages["merge_groups"] == "by partition" and r.updated == 81


def test_a_key_whose_batch_rows_name_two_partitions_is_checked_where_it_lives(client, warehouse, monkeypatch):
    """Key 7 lives in p2; the batch has it twice, in p1 (newer) and p2 (older). Once the duplicate is
    resolved p2 gets no batch row, so its file is checked by the locate beside the apply tasks."""
    monkeypatch.setattr(stage, "FUSE_ROWS_PER_FILE", 1)
    rng = np.random.default_rng(17)
    p = make_pipeline()
    base = _batch(rng, np.arange(20), ts0=0)
    base.loc[base["k1"] == 7, "part"] = "p2"
    write_batch(warehouse, "2026-05-01", base, files=1)
    etl.run(p, date="2026-05-01", warehouse=warehouse, client=client)
    newer = _batch(rng, np.array([7]), ts0=100).assign(part="p1", ts=200)
    older = _batch(rng, np.array([7]), ts0=100).assign(part="p2", ts=100)
    second = pd.concat([newer, older, _batch(rng, np.array([1, 6, 11]), ts0=300)], ignore_index=True)
    write_batch(warehouse, "2026-05-02", second, files=1)
    r = etl.run(p, date="2026-05-02", warehouse=warehouse, client=client)
    got = table_frame(f"{warehouse}/t")
    assert not got.duplicated(["k1", "k2"]).any()
    assert got.loc[got["k1"] == 7, ["part", "ts"]].values.tolist() == [["p1", 200]]
    assert r.stages["merge_groups"] == "by located key" and r.duplicates_dropped == 1


def test_read_ahead_asks_the_os_for_the_local_files_that_exist_and_reports_what_it_asked(tmp_path):
    """The figure a grouped MERGE reports as prefetched is what the OS was asked for: a file gone from
    disk is skipped and not counted, and a table on an object store gets no read-ahead."""
    from etl.commit.files import FileRef
    from etl.commit.merge import MergeSpec
    from etl.io.storage import Location

    (tmp_path / "a.parquet").write_bytes(b"x" * 300)
    (tmp_path / "b.parquet").write_bytes(b"x" * 200)
    refs = [FileRef("a.parquet", (), 300), FileRef("gone.parquet", (), 1000), FileRef("b.parquet", (), 200)]
    local = MergeSpec(Location(str(tmp_path)), None, ("k",))
    assert stage._read_ahead(local, refs) == 500
    remote = MergeSpec(Location("s3://bucket/t", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}), None, ("k",))
    assert stage._read_ahead(remote, refs) == 0
