"""The data files we write: which columns are dictionary encoded, and that they read back exactly."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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
