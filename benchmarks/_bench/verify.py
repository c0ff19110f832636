"""Correctness checks of a Delta table after each step: a number for a wrong result is worthless."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .data import BATCH_TS, DELTA_TYPES, PARTITION_BY, _table_checksums


def file_stats(table: str) -> dict:
    """Active files of the table (relative path -> size) and its version."""
    from deltalake import DeltaTable

    dt = DeltaTable(table)
    acts = pa.table(dt.get_add_actions(flatten=True))
    files = dict(zip(acts.column("path").to_pylist(), acts.column("size_bytes").to_pylist()))
    return {"version": dt.version(), "files": files, "on_disk": dir_file_count(table)}


def file_delta(before: dict | None, after: dict) -> dict:
    prev = before["files"] if before else {}
    cur = after["files"]
    added = [f for f in cur if f not in prev]
    removed = [f for f in prev if f not in cur]
    return {
        "version": after["version"],
        "files_active": len(cur),
        "files_added": len(added),
        "files_removed": len(removed),
        "mb_added": round(sum(cur[f] for f in added) / 2**20, 1),
        "mb_active": round(sum(cur.values()) / 2**20, 1),
        "files_on_disk": after.get("on_disk"),  # active + removed-but-not-vacuumed
    }


def _key(t) -> pa.Array:
    """One int64 per (l_orderkey, l_linenumber); l_linenumber is 1..7."""
    return pc.add(pc.multiply(t["l_orderkey"].cast(pa.int64()), 16), t["l_linenumber"].cast(pa.int64()))


def verify(table: str, manifest: dict, batch_meta: dict | None, batch_dir: str | None) -> dict:
    """Check the table after a load (``batch_meta`` None) or after a merge of the batch.

    After a merge: row count = initial + inserts; no duplicate key; every batch row present
    with the batch's values; exactly the batch's rows carry the batch's l_updated_at; exact
    table-wide checksums of l_quantity and l_extendedprice (untouched rows untouched);
    Delta column types and partitioning as declared; each row in the right partition.
    """
    from deltalake import DeltaTable

    checks: dict[str, bool] = {}
    notes: list[str] = []
    dt = DeltaTable(table)

    types = {f.name: getattr(f.type, "type", str(f.type)) for f in dt.schema().fields}
    checks["schema"] = types == DELTA_TYPES
    if not checks["schema"]:
        notes.append(f"schema {types} != {DELTA_TYPES}")
    checks["partitioning"] = list(dt.metadata().partition_columns) == PARTITION_BY
    if not checks["partitioning"]:
        notes.append(f"partition columns {dt.metadata().partition_columns}")

    cols = ["l_orderkey", "l_linenumber", "l_quantity", "l_extendedprice", "l_comment", "l_updated_at",
            "l_shipdate", "ship_month"]
    t = dt.to_pyarrow_table(columns=cols)
    want_rows = batch_meta["expected_rows"] if batch_meta else manifest["rows"]
    checks["row_count"] = t.num_rows == want_rows
    if not checks["row_count"]:
        notes.append(f"rows {t.num_rows:,} != expected {want_rows:,}")

    keys = _key(t)
    n_distinct = pc.count_distinct(keys).as_py()
    checks["unique_keys"] = n_distinct == t.num_rows
    if not checks["unique_keys"]:
        notes.append(f"{t.num_rows - n_distinct:,} duplicate keys")

    sums = _table_checksums(t)
    want = batch_meta["expected"] if batch_meta else {k: manifest[k] for k in sums}
    checks["checksums"] = sums == want
    if not checks["checksums"]:
        notes.append(f"checksums {sums} != {want}")

    month = pc.strftime(t["l_shipdate"], "%Y-%m")
    checks["partition_values"] = pc.all(pc.equal(month, t["ship_month"].cast(pa.string()))).as_py()

    if batch_meta:
        b = ds.dataset(batch_dir, format="parquet").to_table(columns=cols)
        pos = pc.index_in(_key(b), value_set=keys)
        missing = pos.null_count
        checks["batch_rows_present"] = missing == 0
        if missing:
            notes.append(f"{missing:,} batch rows missing")
        got = t.take(pc.fill_null(pos, 0))
        bad = 0
        for c in ("l_quantity", "l_extendedprice", "l_comment", "l_updated_at"):
            eq = pc.fill_null(pc.equal(got[c], b[c]), False)
            bad_c = b.num_rows - pc.sum(eq.cast(pa.int64())).as_py()
            if bad_c:
                notes.append(f"{bad_c:,} batch rows with a wrong {c}")
            bad += bad_c
        checks["batch_values"] = bad == 0
        n_new = pc.sum(pc.equal(t["l_updated_at"], BATCH_TS).cast(pa.int64())).as_py()
        checks["only_batch_rows_touched"] = n_new == b.num_rows
        if n_new != b.num_rows:
            notes.append(f"{n_new:,} rows carry the batch timestamp, batch has {b.num_rows:,}")

    ok = all(checks.values())
    return {"pass": ok, "checks": checks, "notes": notes}


def dir_file_count(table: str) -> int:
    """Parquet files on disk under the table (active + removed-but-not-vacuumed)."""
    n = 0
    for root, _dirs, files in os.walk(table):
        if "_delta_log" in root:
            continue
        n += sum(f.endswith(".parquet") for f in files)
    return n
