"""The data files we write: which columns are dictionary encoded, and that they read back exactly."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.commit.files import FileRef, read_file, write_file
from etl.io.storage import Location


def _encodings(path: str) -> dict:
    md = pq.read_metadata(path)
    col = md.row_group(0)
    return {col.column(j).path_in_schema: set(col.column(j).encodings) for j in range(col.num_columns)}


def test_low_cardinality_columns_of_any_type_are_dictionary_encoded(tmp_path):
    n = 50_000
    rng = np.random.default_rng(3)
    table = pa.table({
        "key": pa.array(np.arange(n, dtype=np.int64)),  # sorted and unique: a leading sample would lie
        "day": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 30, n)]),
        "discount": pa.array(rng.integers(0, 11, n) / 100.0),
        "line": pa.array(rng.integers(1, 8, n).astype(np.int32)),
        "mode": pa.array(rng.choice(["AIR", "RAIL", "SHIP"], n)),
        "price": pa.array(rng.random(n) * 1000),
        "comment": pa.array([f"c{v}" for v in rng.integers(0, 10**9, n)]),
        "part": pa.array(["p1"] * n),
    })
    root = Location(str(tmp_path))
    add = write_file(root, table, {"part": "p1"}, "run1")
    enc = _encodings(str(tmp_path / add["path"]))
    dictionary = {name for name, e in enc.items() if "RLE_DICTIONARY" in e or "PLAIN_DICTIONARY" in e}
    assert dictionary == {"day", "discount", "line", "mode"}
    assert "part" not in enc  # partition values live in the log, not in the file

    back = read_file(root, FileRef(add["path"], (("part", "p1"),), add["size"], add["num_records"]), table.schema)
    assert back.equals(table)
    assert add["num_records"] == n and add["size"] == (tmp_path / add["path"]).stat().st_size


def test_integer_columns_not_dictionary_encoded_are_delta_packed_and_every_reader_gets_them_back(tmp_path):
    """Keys, ids and timestamps are written DELTA_BINARY_PACKED; the extremes of each type, nulls and
    descending runs come back exactly through pyarrow, DuckDB and polars."""
    import duckdb
    import polars as pl

    n = 20_000
    rng = np.random.default_rng(5)
    i64 = np.arange(n, dtype=np.int64) * 7919
    i64[:4] = [np.iinfo(np.int64).min, np.iinfo(np.int64).max, -1, 0]  # overflowing differences
    u64 = rng.integers(0, np.iinfo(np.int64).max, n, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    u64[0] = np.iinfo(np.uint64).max
    table = pa.table({
        "key": pa.array(i64),
        "desc": pa.array(np.arange(n, 0, -1, dtype=np.int32) * 1000),
        "u": pa.array(u64),
        "maybe": pa.array([None if v % 3 == 0 else int(v) for v in rng.integers(-10**12, 10**12, n)], pa.int64()),
        "ts": pa.array(rng.integers(0, 2**50, n), pa.timestamp("us")),
        "flag": pa.array(rng.integers(0, 3, n).astype(np.int16)),  # low cardinality: stays a dictionary
    })
    root = Location(str(tmp_path))
    add = write_file(root, table, {}, "run1")
    path = str(tmp_path / add["path"])
    enc = _encodings(path)
    delta = {name for name, e in enc.items() if "DELTA_BINARY_PACKED" in e}
    assert delta == {"key", "desc", "u", "maybe", "ts"}
    assert "RLE_DICTIONARY" in enc["flag"] or "PLAIN_DICTIONARY" in enc["flag"]

    assert pq.read_table(path).equals(table)
    assert read_file(root, FileRef(add["path"], (), add["size"], n), table.schema).equals(table)
    frame = pl.read_parquet(path)
    assert frame["key"].to_list() == i64.tolist() and frame["u"].to_list() == u64.tolist()
    assert frame["maybe"].to_list() == table.column("maybe").to_pylist()
    con = duckdb.connect()
    rows = con.execute(f"""SELECT "key", "desc", "maybe" FROM read_parquet('{path}')""").fetchall()
    assert [r[0] for r in rows] == i64.tolist()
    assert [r[1] for r in rows] == table.column("desc").to_pylist()
    assert [r[2] for r in rows] == table.column("maybe").to_pylist()
    stats = json.loads(add["stats"])
    assert stats["minValues"]["key"] == int(i64.min()) and stats["maxValues"]["key"] == int(i64.max())
    assert stats["nullCount"]["maybe"] == table.column("maybe").null_count


def _file_ref(root: Location, add: dict) -> FileRef:
    return FileRef(add["path"], tuple(json.loads(add["partition_values"]).items()), add["size"], add["num_records"])


@pytest.mark.parametrize("with_plain_file", [False, True])
def test_a_rewrite_carries_low_cardinality_strings_as_dictionaries_and_writes_plain_files(tmp_path, with_plain_file):
    """merge_group reads small-dictionary string columns as Arrow dictionaries (a file storing the column
    plainly joins the group decoded); the rows written equal a pandas oracle, and any reader sees strings."""
    from etl.commit.merge import MergeSpec, _dictionary_candidates, merge_group, source_table

    schema = pa.schema([("k", pa.int64()), ("part", pa.string()), ("mode", pa.string()), ("v", pa.float64())])
    root = Location(str(tmp_path))
    rng = np.random.default_rng(5)
    n = 6000
    a = pa.table({"k": np.arange(n), "part": ["p"] * n, "mode": rng.choice(["AIR", "RAIL", None], n),
                  "v": rng.random(n)}, schema=schema)
    refs = [_file_ref(root, write_file(root, a, {"part": "p"}, "run0"))]
    frames = [a.to_pandas()]
    if with_plain_file:  # high cardinality: stored plain, read as strings
        b = pa.table({"k": np.arange(n, 2 * n), "part": ["p"] * n, "mode": [f"m{i}" for i in range(n)],
                      "v": rng.random(n)}, schema=schema)
        refs.append(_file_ref(root, write_file(root, b, {"part": "p"}, "run0")))
        frames.append(b.to_pandas())
    spec = MergeSpec(root, schema, ("k",), ("part",), None, "run1")
    assert _dictionary_candidates(spec) == ("mode",)  # not the key, not the partition column
    read_types = [read_file(root, ref, schema, dictionary=("mode",)).schema.field("mode").type for ref in refs]
    assert pa.types.is_dictionary(read_types[0])
    assert read_types[1:] == ([pa.string()] if with_plain_file else [])  # a group of mixed files: aligned

    upd_keys = np.concatenate([rng.choice(n, 50, replace=False), [n + 1, n + 2] if with_plain_file else []])
    batch = pd.DataFrame({"k": np.concatenate([upd_keys, [10**6, 10**6 + 1]]).astype("int64"), "part": "p",
                          "mode": ["TRUCK"] * (len(upd_keys) + 1) + [None], "v": 1.5})
    res = merge_group(spec, source_table(batch, schema), refs)
    assert res.counts["updated"] == len(upd_keys) and res.counts["inserted"] == 2
    assert len(res.removes) == len(refs) and len(res.adds) == 1

    path = str(tmp_path / res.adds[0]["path"])
    assert b"ARROW:schema" not in (pq.read_metadata(path).metadata or {})
    assert pq.read_schema(path).field("mode").type == pa.string()  # plain for every reader
    got = read_file(root, _file_ref(root, res.adds[0]), schema).to_pandas().sort_values("k").reset_index(drop=True)
    want = pd.concat(frames).set_index("k")
    new = batch.set_index("k")
    want = pd.concat([want.drop(index=new.index, errors="ignore"), new]).sort_index().reset_index()
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False)
    assert res.adds[0]["stats"] and json.loads(res.adds[0]["stats"])["minValues"]["mode"] == "AIR"


def test_non_nullable_columns_are_written_required_and_a_null_keeps_a_column_optional(tmp_path):
    """Columns the table declares non-nullable carry no definition levels (Parquet REQUIRED); a nullable
    column, or a declared one that holds a null after all, stays OPTIONAL; everything reads back exactly,
    through pyarrow, DuckDB and polars."""
    import duckdb
    import polars as pl

    from etl.commit.merge import MergeSpec, write_rows

    schema = pa.schema([pa.field("k", pa.int64(), nullable=False), pa.field("v", pa.float64(), nullable=False),
                        ("note", pa.string()), ("part", pa.string())])
    root = Location(str(tmp_path))
    n = 3000
    table = pa.table({"k": np.arange(n), "v": np.linspace(0, 1, n), "note": [None, "a", "b"] * (n // 3),
                      "part": ["p"] * n})
    add, = write_rows(MergeSpec(root, schema, ("k",), ("part",), None, "run1"), table)
    path = str(tmp_path / add["path"])
    required = {f.name: not f.nullable for f in pq.read_schema(path)}
    assert required == {"k": True, "v": True, "note": False}
    back = read_file(root, _file_ref(root, add), schema)
    assert back.equals(table.cast(back.schema))
    assert duckdb.sql(f"select count(*), count(note), sum(k) from '{path}'").fetchall() == [(n, 2 * n // 3, n * (n - 1) // 2)]
    assert pl.read_parquet(path)["note"].null_count() == n // 3

    add = write_file(root, table.drop_columns(["part"]), {}, "run2", not_null={"k", "note"})
    assert {f.name: not f.nullable for f in pq.read_schema(str(tmp_path / add["path"]))} == \
        {"k": True, "v": False, "note": False}  # "note" holds nulls: written OPTIONAL, not refused or lost
    assert pq.read_table(str(tmp_path / add["path"]))["note"].null_count == n // 3


def test_dictionary_columns_get_delta_stats_from_the_values_their_rows_use(tmp_path):
    """A rewrite writes low-cardinality strings from their dictionary without Parquet min/max; the add
    action's min/max are those of the rows the file holds, not of every dictionary entry (an entry whose
    rows were all updated away stays in the dictionary)."""
    from etl.commit.merge import MergeSpec, merge_group, source_table

    schema = pa.schema([("k", pa.int64()), ("part", pa.string()), ("mode", pa.string())])
    root = Location(str(tmp_path))
    n = 4000
    modes = np.array(["BUS", "RAIL"] * (n // 2), dtype=object)
    modes[:5] = "ZULU"  # the greatest value, on five rows only
    modes[5:8] = "ANT"  # the least
    modes[8] = None
    a = pa.table({"k": np.arange(n), "part": ["p"] * n, "mode": modes}, schema=schema)
    ref = _file_ref(root, write_file(root, a, {"part": "p"}, "run0"))
    assert pa.types.is_dictionary(read_file(root, ref, schema, dictionary=("mode",)).schema.field("mode").type)

    batch = pd.DataFrame({"k": np.arange(8), "part": "p", "mode": "CAR"})  # ZULU and ANT rows become CAR
    res = merge_group(MergeSpec(root, schema, ("k",), ("part",), None, "run1"), source_table(batch, schema), [ref])
    assert res.counts["updated"] == 8
    stats = json.loads(res.adds[0]["stats"])
    assert (stats["minValues"]["mode"], stats["maxValues"]["mode"], stats["nullCount"]["mode"]) == ("BUS", "RAIL", 1)
    path = str(tmp_path / res.adds[0]["path"])
    md = pq.read_metadata(path)
    mode = next(md.row_group(0).column(j) for j in range(md.num_columns) if md.row_group(0).column(j).path_in_schema == "mode")
    assert mode.statistics is None or not mode.statistics.has_min_max  # none from the writer, by design
    values = pq.read_table(path)["mode"].drop_null().to_pylist()
    assert (min(values), max(values)) == ("BUS", "RAIL")


def _codecs(path) -> set:
    md = pq.read_metadata(path)
    return {md.row_group(g).column(j).compression for g in range(md.num_row_groups) for j in range(md.num_columns)}


def test_a_target_chooses_the_codec_and_a_table_may_mix_codecs(warehouse, client):
    """Files are written LZ4_RAW by default and with the target's codec when it names one; a merge reads a
    table whose files use different codecs; the run id is read back from every file name, and other
    readers (deltalake, DuckDB) see the same rows."""
    import duckdb
    from deltalake import DeltaTable

    import etl
    from etl.commit.files import staged_run_id
    from tests.core.helpers import make_pipeline, random_batch, write_batch

    rng = np.random.default_rng(11)
    first = random_batch(rng, 300, key_space=200, delete_frac=0.0)
    write_batch(warehouse, "2024-01-01", first)
    etl.run(make_pipeline("t_snappy", compression="snappy"), date="2024-01-01", warehouse=warehouse, client=client)
    table = f"{warehouse}/t"
    old = set(DeltaTable(table).file_uris())
    assert old and all(p.endswith(".snappy.parquet") and _codecs(p) == {"SNAPPY"} for p in old)

    # updates of partition p0's rows and new keys there: the other partitions' files stay as they are
    second = DeltaTable(table).to_pandas().query("part == 'p0'").head(40).assign(v=7.5)
    second = pd.concat([second, second.head(5).assign(k1=lambda d: d.k1 + 10_000)])
    second = second.assign(ts=1000 + np.arange(len(second)), op_delete=False)
    write_batch(warehouse, "2024-01-02", second)
    res = etl.run(make_pipeline("t_default"), date="2024-01-02", warehouse=warehouse, client=client)
    live = set(DeltaTable(table).file_uris())
    new = live - old
    assert (res.updated, res.inserted) == (40, 5) and new
    assert all(p.endswith(".lz4raw.parquet") and _codecs(p) == {"LZ4"} for p in new)
    assert live & old, "untouched snappy files stay live next to the lz4 ones"
    assert {staged_run_id(p) for p in live} == {res.run_id} | {staged_run_id(p) for p in live & old}
    assert None not in {staged_run_id(p) for p in live}

    both = pd.concat([first, second]).drop(columns="op_delete")
    want = both.sort_values("ts").drop_duplicates(["k1", "k2"], keep="last")
    got = DeltaTable(table).to_pandas()
    assert len(got) == len(want) == duckdb.sql(f"select count(*) from read_parquet({sorted(live)!r})").fetchall()[0][0]
    pd.testing.assert_frame_equal(got.sort_values(["k1", "k2"]).reset_index(drop=True)[want.columns],
                                  want.sort_values(["k1", "k2"]).reset_index(drop=True), check_dtype=False)

    with pytest.raises(etl.ConfigError, match="unknown compression 'brotli'"):
        etl.Target.merge("t", keys=["k1"], compression="brotli")


def test_prefetch_asks_only_for_local_files_that_exist_within_the_budget(tmp_path):
    from etl.commit.files import prefetch

    for name, size in [("a.parquet", 300), ("b.parquet", 500)]:
        (tmp_path / name).write_bytes(b"x" * size)
    refs = [FileRef("gone.parquet", (), 10_000), FileRef("a.parquet", (), 300), FileRef("b.parquet", (), 500)]
    assert prefetch(Location(str(tmp_path)), refs, budget=100_000) == 800  # the missing file is skipped
    assert prefetch(Location(str(tmp_path)), refs[1:], budget=700) == 300  # stops before going over
    assert prefetch(Location("memory://bucket/t"), refs[1:], budget=100_000) == 0  # no page cache to fill
