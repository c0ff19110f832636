"""Source formats, bad input, schema checks and evolution: clear errors, table left at its last version."""

from __future__ import annotations

import os

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

import etl
from etl import Schema, Source, Target, pipeline
from tests.core.helpers import data_files_on_disk, make_pipeline, random_batch, table_frame, write_batch

SMALL = Schema({"id": "int64", "name": "string", "amount": "float64"})


def _ident(src: dd.DataFrame) -> dd.DataFrame:
    return src


def _pipe(source: Source, schema: Schema = SMALL, **target):
    return pipeline(name="t_src", sources={"src": source}, target=Target.merge("s", keys=["id"], **target),
                    schema=schema)(_ident)


def _frame(n=5, start=0):
    return pd.DataFrame({"id": np.arange(start, start + n, dtype="int64"), "name": [f"n{i}" for i in range(n)],
                         "amount": np.linspace(0, 1, n)})


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_csv_and_json_lines_sources(client, warehouse, fmt):
    folder = os.path.join(warehouse, "in", "ds=2026-01-01")
    os.makedirs(folder)
    df = _frame(7)
    if fmt == "csv":
        df.to_csv(os.path.join(folder, "a.csv"), index=False)
        src = Source.csv("{warehouse}/in/ds={date}/*.csv")
    else:
        df.to_json(os.path.join(folder, "a.jsonl"), orient="records", lines=True)
        src = Source.jsonl("{warehouse}/in/ds={date}/*.jsonl")
    r = etl.run(_pipe(src), date="2026-01-01", warehouse=warehouse, client=client)
    assert r.inserted == 7 and r.rows_read is None  # CSV/JSON row counts are unknown before reading
    got = DeltaTable(f"{warehouse}/s").to_pandas().sort_values("id").reset_index(drop=True)
    assert got["id"].tolist() == list(range(7)) and got["name"].tolist() == df["name"].tolist()


def test_delta_source_at_a_version_and_lineage(client, warehouse):
    from deltalake import write_deltalake

    write_deltalake(f"{warehouse}/upstream", _frame(3))
    write_deltalake(f"{warehouse}/upstream", _frame(4, start=3), mode="append")  # version 1
    r = etl.run(_pipe(Source.delta("{warehouse}/upstream", version=0)), warehouse=warehouse, client=client,
                params={"who": "test"})
    assert r.inserted == 3 and r.rows_read == 3
    entry = DeltaTable(f"{warehouse}/s").history(1)[0]
    sources = __import__("json").loads(entry["etl.sources"])
    assert sources[0]["version"] == 0 and sources[0]["format"] == "delta"
    assert entry["etl.pipeline"] == "t_src" and entry["etl.run_id"] == r.run_id
    assert __import__("json").loads(entry["etl.params"]) == {"who": "test"}
    assert __import__("json").loads(entry["etl.rows"])["inserted"] == 3
    assert len(entry["etl.code_version"]) >= 7


def test_missing_source_fails_before_anything_with_the_url(client, warehouse):
    p = make_pipeline()
    with pytest.raises(etl.SourceError, match=r"no files match .*in/ds=2026-01-01") as info:
        etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    assert "2026-01-01" in info.value.file
    assert not os.path.exists(f"{warehouse}/t")


def test_truncated_parquet_fails_naming_the_file_and_table_stays(client, warehouse):
    rng = np.random.default_rng(0)
    p = make_pipeline()
    write_batch(warehouse, "2026-01-01", random_batch(rng, 30))
    etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    before, files = table_frame(f"{warehouse}/t"), data_files_on_disk(f"{warehouse}/t")
    write_batch(warehouse, "2026-01-02", random_batch(rng, 30, ts0=100), files=3)
    bad = os.path.join(warehouse, "in", "ds=2026-01-02", "part-1.parquet")
    data = open(bad, "rb").read()
    open(bad, "wb").write(data[: len(data) // 2])
    with pytest.raises(etl.SourceError, match="part-1.parquet") as info:
        etl.run(p, date="2026-01-02", warehouse=warehouse, client=client)
    assert info.value.exit_code == 5 and "part-1.parquet" in info.value.file
    assert DeltaTable(f"{warehouse}/t").version() == 1
    pd.testing.assert_frame_equal(table_frame(f"{warehouse}/t"), before)
    assert data_files_on_disk(f"{warehouse}/t") == files


def test_wrong_type_names_column_expected_and_found(client, warehouse):
    folder = os.path.join(warehouse, "in", "ds=2026-01-01")
    os.makedirs(folder)
    _frame(4).assign(amount=["a", "b", "c", "d"]).to_parquet(os.path.join(folder, "x.parquet"))
    with pytest.raises(etl.SchemaError) as info:
        etl.run(_pipe(Source.parquet("{warehouse}/in/ds={date}/*.parquet")), date="2026-01-01",
                warehouse=warehouse, client=client)
    err = info.value
    assert (err.column, err.expected) == ("amount", "double") and "string" in err.found
    assert "expected double" in str(err) and DeltaTable(f"{warehouse}/s").version() == 0


def test_null_merge_key_is_refused(client, warehouse):
    folder = os.path.join(warehouse, "in", "ds=2026-01-01")
    os.makedirs(folder)
    _frame(3).assign(id=pd.array([1, None, 3], dtype="Int64")).to_parquet(os.path.join(folder, "x.parquet"))
    with pytest.raises(etl.SchemaError, match="'id' is declared not-null .* 1 null"):
        etl.run(_pipe(Source.parquet("{warehouse}/in/ds={date}/*.parquet")), date="2026-01-01",
                warehouse=warehouse, client=client)


def test_new_column_needs_opt_in_and_is_its_own_commit(client, warehouse):
    folder = os.path.join(warehouse, "in", "ds=2026-01-01")
    os.makedirs(folder)
    _frame(3).to_parquet(os.path.join(folder, "x.parquet"))
    src = Source.parquet("{warehouse}/in/ds={date}/*.parquet")
    etl.run(_pipe(src), date="2026-01-01", warehouse=warehouse, client=client)
    wider = Schema({**SMALL.columns, "note": "string"})

    def add_note(src: dd.DataFrame) -> dd.DataFrame:
        return src.assign(note="hello")

    os.makedirs(os.path.join(warehouse, "in", "ds=2026-01-02"))
    _frame(2, start=10).to_parquet(os.path.join(warehouse, "in", "ds=2026-01-02", "x.parquet"))
    strict = pipeline(name="t_src", sources={"src": src}, target=Target.merge("s", keys=["id"]),
                      schema=wider)(add_note)
    with pytest.raises(etl.SchemaError, match="allow_new_columns"):
        etl.run(strict, date="2026-01-02", warehouse=warehouse, client=client)
    assert DeltaTable(f"{warehouse}/s").version() == 1
    opted = pipeline(name="t_src", sources={"src": src},
                     target=Target.merge("s", keys=["id"], allow_new_columns=True), schema=wider)(add_note)
    etl.run(opted, date="2026-01-02", warehouse=warehouse, client=client)
    dt = DeltaTable(f"{warehouse}/s")
    ops = [h["operation"] for h in dt.history()]
    assert ops[:2] == ["WRITE", "ADD COLUMN"] and dt.version() == 3
    got = dt.to_pandas().sort_values("id")
    assert got["note"].isna().tolist() == [True, True, True, False, False]
    assert got["note"].dropna().tolist() == ["hello", "hello"]


def test_table_partitioning_mismatch_is_refused(client, warehouse):
    p = make_pipeline()
    rng = np.random.default_rng(1)
    write_batch(warehouse, "2026-01-01", random_batch(rng, 10))
    etl.run(p, date="2026-01-01", warehouse=warehouse, client=client)
    other = make_pipeline(partition_by=())
    with pytest.raises(etl.SchemaError, match=r"partitioned by \['part'\]"):
        etl.run(other, date="2026-01-01", warehouse=warehouse, client=client, force=True)
