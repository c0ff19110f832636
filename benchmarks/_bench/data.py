"""TPC-H lineitem input and deterministic MERGE batches for the upsert benchmark.

Layout under ``benchmarks/data/`` (gitignored), per scale factor::

    sf1/raw/lineitem.parquet            tpchgen-cli output (decimals, string_view)
    sf1/input/part-00000.parquet ...    normalised, split into ~500K-row files
    sf1/input/_manifest.json            row count, schema, checksums, months
    sf1/batch-spread-s42/part-*.parquet a MERGE batch (updates + inserts)
    sf1/batch-spread-s42/_batch.json    its counts and the expected table checksums

Everything is cached; a directory counts as done only once its json is written.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

KEYS = ["l_orderkey", "l_linenumber"]
PARTITION_BY = ["ship_month"]
ORDER_BY = "l_updated_at"
#: Columns a MERGE batch changes on updated rows.
CHANGED = ["l_quantity", "l_extendedprice", "l_comment", "l_updated_at"]

#: l_updated_at is int64 epoch microseconds (UTC). Initial load: 2024-01-01, batch: 2024-01-02.
LOAD_TS = 1_704_067_200_000_000
BATCH_TS = LOAD_TS + 86_400_000_000

ROWS_PER_INPUT_FILE = 500_000
ROWS_PER_BATCH_FILE = 50_000
UPDATE_FRACTION = 0.01
INSERT_FRACTION = 0.005
RECENT_MONTHS = 3

#: The normalised schema, declared NOT NULL throughout as TPC-H declares every column (ship_month is
#: derived from l_shipdate). Every engine gets the same declaration: deltalake's own load writes
#: these columns Parquet REQUIRED (its MERGE writes them OPTIONAL), etl writes them REQUIRED, and
#: polars' and pandas' nullable frames merge into the table as they are.
SCHEMA = pa.schema(
    [pa.field(name, typ, nullable=False) for name, typ in [
        ("l_orderkey", pa.int64()),
        ("l_partkey", pa.int64()),
        ("l_suppkey", pa.int64()),
        ("l_linenumber", pa.int32()),
        ("l_quantity", pa.float64()),
        ("l_extendedprice", pa.float64()),
        ("l_discount", pa.float64()),
        ("l_tax", pa.float64()),
        ("l_returnflag", pa.string()),
        ("l_linestatus", pa.string()),
        ("l_shipdate", pa.date32()),
        ("l_commitdate", pa.date32()),
        ("l_receiptdate", pa.date32()),
        ("l_shipinstruct", pa.string()),
        ("l_shipmode", pa.string()),
        ("l_comment", pa.string()),
        ("l_updated_at", pa.int64()),
        ("ship_month", pa.string()),
    ]]
)

#: Delta primitive type expected for each column of the written table.
DELTA_TYPES = {
    f.name: {
        pa.int64(): "long",
        pa.int32(): "integer",
        pa.float64(): "double",
        pa.string(): "string",
        pa.date32(): "date",
    }[f.type]
    for f in SCHEMA
}


def sf_dir(data_root: Path, sf: float) -> Path:
    tag = f"{sf:g}".replace(".", "_")
    return Path(data_root) / f"sf{tag}"


def _log(msg: str) -> None:
    print(f"[data] {msg}", flush=True)


# --------------------------------------------------------------------------- input


def _generate_raw(sf: float, raw_dir: Path) -> Path:
    out = raw_dir / "lineitem.parquet"
    if out.exists():
        return out
    tmp = raw_dir.with_name(raw_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    exe = shutil.which("tpchgen-cli")
    if exe is None:
        raise SystemExit("tpchgen-cli not found on PATH (pip install tpchgen-cli)")
    cmd = [exe, "parquet", "-s", f"{sf:g}", "-T", "lineitem", "-o", str(tmp), "--no-progress", "-q"]
    _log("generating: " + " ".join(cmd))
    subprocess.run(cmd, check=True)
    shutil.rmtree(raw_dir, ignore_errors=True)
    tmp.rename(raw_dir)
    return out


def normalise(batch: pa.RecordBatch | pa.Table, updated_at: int = LOAD_TS) -> pa.Table:
    """tpchgen-cli columns -> :data:`SCHEMA` (decimals to float64, plain strings, ship_month)."""
    t = pa.table(batch) if isinstance(batch, pa.RecordBatch) else batch
    cols = []
    for f in SCHEMA:
        if f.name == "l_updated_at":
            cols.append(pa.array(np.full(t.num_rows, updated_at, dtype=np.int64)))
        elif f.name == "ship_month":
            cols.append(pc.strftime(t.column("l_shipdate"), "%Y-%m").cast(pa.string()))
        else:
            cols.append(t.column(f.name).cast(f.type))
    return pa.Table.from_arrays(cols, schema=SCHEMA)


def _table_checksums(t: pa.Table) -> dict:
    """Exact order-independent sums used to check that untouched rows stay untouched."""
    return {
        "sum_quantity": int(pc.sum(t.column("l_quantity").cast(pa.int64())).as_py() or 0),
        "sum_extendedprice_cents": int(
            pc.sum(pc.round(pc.multiply(t.column("l_extendedprice"), 100.0)).cast(pa.int64())).as_py() or 0
        ),
    }


def prepare_input(data_root: Path, sf: float) -> dict:
    """Generate (cached) and normalise lineitem; return the input manifest."""
    root = sf_dir(data_root, sf)
    in_dir = root / "input"
    manifest_path = in_dir / "_manifest.json"
    if manifest_path.exists():
        return json.loads(manifest_path.read_text())
    raw = _generate_raw(sf, root / "raw")
    pf = pq.ParquetFile(raw)
    n = pf.metadata.num_rows
    n_files = max(1, math.ceil(n / ROWS_PER_INPUT_FILE))
    per_file = math.ceil(n / n_files)
    _log(f"normalising {n:,} rows into {n_files} files of ~{per_file:,} rows")
    tmp = in_dir.with_name("input.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    files, writer, in_file, idx = [], None, 0, 0
    sums = {"sum_quantity": 0, "sum_extendedprice_cents": 0}
    months: dict[str, int] = {}
    max_orderkey = 0
    for rb in pf.iter_batches(batch_size=65_536):
        t = normalise(rb)
        for k, v in _table_checksums(t).items():
            sums[k] += v
        vc = pc.value_counts(t.column("ship_month"))
        for item in vc.to_pylist():
            months[item["values"]] = months.get(item["values"], 0) + item["counts"]
        max_orderkey = max(max_orderkey, pc.max(t.column("l_orderkey")).as_py())
        off = 0
        while off < t.num_rows:
            if writer is None:
                name = f"part-{idx:05d}.parquet"
                files.append(name)
                writer = pq.ParquetWriter(tmp / name, SCHEMA, compression="snappy")
            take = min(t.num_rows - off, per_file - in_file)
            writer.write_table(t.slice(off, take), row_group_size=131_072)
            off += take
            in_file += take
            if in_file == per_file:
                writer.close()
                writer, in_file, idx = None, 0, idx + 1
    if writer is not None:
        writer.close()
    manifest = {
        "sf": sf,
        "rows": n,
        "files": files,
        "max_orderkey": max_orderkey,
        "months": dict(sorted(months.items())),
        **sums,
    }
    (tmp / "_manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(in_dir, ignore_errors=True)
    tmp.rename(in_dir)
    return manifest


def input_files(data_root: Path, sf: float) -> list[str]:
    d = sf_dir(data_root, sf) / "input"
    m = json.loads((d / "_manifest.json").read_text())
    return [str((d / f).resolve()) for f in m["files"]]


# --------------------------------------------------------------------------- batches


def recent_months(months: dict[str, int], n: int = RECENT_MONTHS) -> list[str]:
    """The ``n`` most recent *complete* ship months.

    TPC-H's last ship months are a thin tail (at SF1: 1998-09 48K rows, 1998-10 30K,
    1998-11 10K, 1998-12 18 rows): together the last three cannot even hold the 1%
    update sample. A month counts here when it holds at least half the median month's
    rows; the result at SF1 is 1998-07, 1998-08, 1998-09 (194K rows).
    """
    med = float(np.median(list(months.values())))
    full = [m for m, c in sorted(months.items()) if c >= 0.5 * med]
    return full[-n:]


def _changed_comment(comment: pa.Array, tag: str) -> pa.Array:
    return pc.utf8_slice_codeunits(pc.binary_join_element_wise(pa.scalar(tag), comment, ""), 0, 44)


def prepare_batch(data_root: Path, sf: float, shape: str, seed: int = 42) -> dict:
    """Build (cached) the MERGE batch of one shape; return its description."""
    if shape not in ("spread", "recent"):
        raise ValueError(f"unknown shape {shape!r}: expected 'spread' or 'recent'")
    manifest = prepare_input(data_root, sf)
    root = sf_dir(data_root, sf)
    bdir = root / f"batch-{shape}-s{seed}"
    meta_path = bdir / "_batch.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    files = input_files(data_root, sf)
    n = manifest["rows"]
    n_upd = int(round(n * UPDATE_FRACTION))
    n_ins = int(round(n * INSERT_FRACTION))
    rng = np.random.default_rng([seed, 0 if shape == "spread" else 1])

    # Candidate rows: global row positions (all rows, or the rows of the recent months).
    months_sel = recent_months(manifest["months"]) if shape == "recent" else None
    lens, cand = [], []
    base = 0
    for f in files:
        t = pq.read_table(f, columns=["ship_month"])
        lens.append(t.num_rows)
        if months_sel is None:
            cand.append(np.arange(base, base + t.num_rows, dtype=np.int64))
        else:
            mask = pc.is_in(t.column("ship_month"), value_set=pa.array(months_sel)).to_numpy(zero_copy_only=False)
            cand.append(np.nonzero(mask)[0].astype(np.int64) + base)
        base += t.num_rows
    cand = np.concatenate(cand)
    if len(cand) < n_upd:
        raise SystemExit(f"shape {shape}: only {len(cand)} candidate rows for {n_upd} updates")
    upd_pos = np.sort(rng.choice(cand, size=n_upd, replace=False))
    ins_src = np.sort(rng.choice(cand, size=n_ins, replace=len(cand) < n_ins))

    starts = np.cumsum([0] + lens)
    upd_parts, ins_parts = [], []
    old = {"sum_quantity": 0, "sum_extendedprice_cents": 0}
    for i, f in enumerate(files):
        lo, hi = starts[i], starts[i + 1]
        u = upd_pos[(upd_pos >= lo) & (upd_pos < hi)] - lo
        s = ins_src[(ins_src >= lo) & (ins_src < hi)] - lo
        if len(u) == 0 and len(s) == 0:
            continue
        t = pq.read_table(f)
        if len(u):
            tu = t.take(pa.array(u))
            for k, v in _table_checksums(tu).items():
                old[k] += v
            upd_parts.append(tu)
        if len(s):
            ins_parts.append(t.take(pa.array(s)))

    tag = f"s{seed}"
    # Updates: same key, changed quantity / price / comment, later l_updated_at.
    upd = pa.concat_tables(upd_parts)
    q = upd.column("l_quantity").to_numpy()
    q_new = np.where(q >= 50, 1.0, q + 1.0)
    p_new = np.round(upd.column("l_extendedprice").to_numpy() / q * q_new, 2)
    upd = upd.set_column(upd.schema.get_field_index("l_quantity"), "l_quantity", pa.array(q_new))
    upd = upd.set_column(upd.schema.get_field_index("l_extendedprice"), "l_extendedprice", pa.array(p_new))
    upd = upd.set_column(
        upd.schema.get_field_index("l_comment"), "l_comment", _changed_comment(upd.column("l_comment"), f"upd {tag} ")
    )
    upd = upd.set_column(
        upd.schema.get_field_index("l_updated_at"), "l_updated_at", pa.array(np.full(n_upd, BATCH_TS, np.int64))
    )

    # Inserts: copies of sampled rows of the same months under new keys above the max orderkey
    # (4 lines per new order).
    ins = pa.concat_tables(ins_parts)
    i = np.arange(n_ins, dtype=np.int64)
    ins = ins.set_column(0, "l_orderkey", pa.array(manifest["max_orderkey"] + 1 + i // 4))
    ins = ins.set_column(
        ins.schema.get_field_index("l_linenumber"), "l_linenumber", pa.array((i % 4 + 1).astype(np.int32))
    )
    ins = ins.set_column(
        ins.schema.get_field_index("l_comment"), "l_comment", _changed_comment(ins.column("l_comment"), f"ins {tag} ")
    )
    ins = ins.set_column(
        ins.schema.get_field_index("l_updated_at"), "l_updated_at", pa.array(np.full(n_ins, BATCH_TS, np.int64))
    )

    batch = pa.concat_tables([upd.cast(SCHEMA), ins.cast(SCHEMA)])
    batch = batch.take(pa.array(rng.permutation(batch.num_rows)))
    new_u, new_i = _table_checksums(upd), _table_checksums(ins)
    expected = {
        k: manifest[k] - old[k] + new_u[k] + new_i[k] for k in ("sum_quantity", "sum_extendedprice_cents")
    }

    tmp = bdir.with_name(bdir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_files = max(1, math.ceil(batch.num_rows / ROWS_PER_BATCH_FILE))
    per = math.ceil(batch.num_rows / n_files)
    names = []
    for j in range(n_files):
        name = f"part-{j:05d}.parquet"
        pq.write_table(batch.slice(j * per, per), tmp / name, compression="snappy")
        names.append(name)
    touched = pc.value_counts(batch.column("ship_month")).to_pylist()
    meta = {
        "shape": shape,
        "seed": seed,
        "rows": batch.num_rows,
        "updates": n_upd,
        "inserts": n_ins,
        "files": names,
        "months": months_sel,
        "months_touched": len(touched),
        "initial_rows": n,
        "expected_rows": n + n_ins,
        "expected": expected,
        "batch_ts": BATCH_TS,
    }
    (tmp / "_batch.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(bdir, ignore_errors=True)
    tmp.rename(bdir)
    _log(f"batch {shape}: {n_upd:,} updates + {n_ins:,} inserts over {len(touched)} months")
    return meta


def batch_files(data_root: Path, sf: float, shape: str, seed: int = 42) -> list[str]:
    d = sf_dir(data_root, sf) / f"batch-{shape}-s{seed}"
    meta = json.loads((d / "_batch.json").read_text())
    return [str((d / f).resolve()) for f in meta["files"]]


def batch_dir(data_root: Path, sf: float, shape: str, seed: int = 42) -> Path:
    return (sf_dir(data_root, sf) / f"batch-{shape}-s{seed}").resolve()
