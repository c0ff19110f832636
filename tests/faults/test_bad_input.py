"""Issue 4, fault 6: bad rows and a malformed file, in a run and in a backfill, through the command line.

Bad rows (unparsable numbers, null keys, out-of-range values, duplicate keys)
go to the quarantine, good rows commit; a truncated Parquet file fails its
batch naming the file (SourceError, exit code 5) and commits nothing; the
backfill records that batch failed, commits the others and prints a resume
command that, once the file is replaced, completes the range.
"""

from __future__ import annotations

import os
import shlex
from collections import Counter

import numpy as np
import pandas as pd
from click.testing import CliRunner
from deltalake import DeltaTable

import etl
from etl.cli import cli
from etl.commit.cleanup import referenced_paths
from etl.io.storage import Location
from etl.ledger.store import Ledger
from tests.core.helpers import data_files_on_disk, oracle, random_batch
from tests.faults._faults import assert_each_once, assert_sound, day, verify_report
from tests.faults._pipelines import CONTRACT_NAME, contract_pipeline

PIPE = "from tests.faults._pipelines import contract_pipeline\np = contract_pipeline()\n"


def _rows(rng, n: int, k1_from: int, ts0: int) -> pd.DataFrame:
    """``n`` upserts with keys ``(k1_from + i, 'b0')`` and |v| < 10."""
    b = random_batch(rng, n, ts0=ts0, delete_frac=0.0)
    return b.assign(k1=np.arange(k1_from, k1_from + n, dtype="int64"), k2=pd.array(["b0"] * n, dtype="string"),
                    v=b["v"].clip(-5, 5))


def _write(folder: str, name: str, df: pd.DataFrame) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    df.to_parquet(path, index=False)
    return path


def _bad_day(warehouse: str, date: str, rng) -> tuple[pd.DataFrame, Counter]:
    """Two files: good rows and bad ones; returns the good rows and the expected quarantine per check."""
    folder = os.path.join(warehouse, "in", f"ds={date}")
    good0, good1 = _rows(rng, 30, 0, 100), _rows(rng, 30, 1_000, 200)
    null_keys = _rows(rng, 3, 2_000, 300).astype({"k1": "Int64"})
    null_keys["k1"] = pd.array([None] * 3, dtype="Int64")
    out_of_range = _rows(rng, 3, 3_000, 400).assign(v=[99.0, -50.0, 1e9])
    dup = _rows(rng, 2, 4_000, 500).assign(k1=[4_000, 4_000])  # one key twice, different ts
    f0 = pd.concat([good0.astype({"k1": "Int64"}), null_keys, out_of_range.astype({"k1": "Int64"}),
                    dup.astype({"k1": "Int64"})], ignore_index=True)
    wrong = _rows(rng, 3, 5_000, 600).astype({"ts": str})
    wrong["ts"] = ["n/a", "12:00", ""]  # not integers
    f1 = pd.concat([good1.astype({"ts": str}), wrong], ignore_index=True)  # this file writes ts as strings
    _write(folder, "part-0.parquet", f0)
    _write(folder, "part-1.parquet", f1)
    expected = Counter({"not_null:k1": 3, "in_range:v": 3, "unique:k1,k2": 2, "ts_parses": 3})
    return pd.concat([good0, good1], ignore_index=True), expected


def _truncate(path: str) -> None:
    """Keep the first half of the file: the Parquet footer is gone."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def test_bad_rows_quarantined_malformed_file_fails_its_batch_and_backfill_resumes(client, warehouse, tmp_path):
    rng = np.random.default_rng(66)
    url, addr = f"{warehouse}/t", client.scheduler.address
    good1, quarantine_expected = _bad_day(warehouse, day(1), rng)
    day2 = pd.concat([_rows(rng, 20, 0, 10_000), _rows(rng, 20, 7_000, 10_100)], ignore_index=True)
    day3 = _rows(rng, 25, 500, 20_000)
    d2 = os.path.join(warehouse, "in", f"ds={day(2)}")
    _write(d2, "part-0.parquet", day2.iloc[:20])
    broken = _write(d2, "part-1.parquet", day2.iloc[20:])
    _truncate(broken)
    _write(os.path.join(warehouse, "in", f"ds={day(3)}"), "part-0.parquet", day3)
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "faulty.py").write_text(PIPE)
    base = ["--pipelines", str(tmp_path / "pipes")]

    bf = CliRunner().invoke(cli, [*base, "backfill", CONTRACT_NAME, "--start", day(1), "--end", day(3),
                                  "--warehouse", warehouse, "--scheduler", addr])
    assert bf.exit_code == 5, bf.output  # the first failure's class: SourceError
    states = {s.batch: s for s in Ledger(warehouse).batches(CONTRACT_NAME)}
    assert {b: s.state for b, s in states.items()} == {day(1): "succeeded", day(2): "failed", day(3): "succeeded"}
    assert states[day(2)].error_class == "SourceError" and "part-1.parquet" in states[day(2)].error_message
    assert states[day(1)].rows["quarantined"] == sum(quarantine_expected.values())
    resume = bf.output.split("Resume with:")[1].strip().splitlines()[0]
    assert resume.startswith(f"etl backfill {CONTRACT_NAME} ") and "--reprocess failed" in resume
    assert_sound(url, oracle([good1, day3]))

    # the same malformed batch alone: exit 5, the file named, nothing committed and nothing left staged
    version, on_disk = DeltaTable(url).version(), data_files_on_disk(url)
    one = CliRunner().invoke(cli, [*base, "run", CONTRACT_NAME, "--date", day(2), "--warehouse", warehouse,
                                   "--scheduler", addr])
    assert one.exit_code == 5, one.output
    assert f"ds={day(2)}/part-1.parquet" in one.output
    assert DeltaTable(url).version() == version and data_files_on_disk(url) == on_disk
    q = DeltaTable(f"{warehouse}/_etl_quarantine").to_pandas()
    assert Counter(q["check"]) == quarantine_expected
    assert set(q.loc[q["check"] == "ts_parses", "source_file"].str[-14:]) == {"part-1.parquet"}
    assert not q.duplicated(["source_file", "row"]).any()

    _write(d2, "part-1.parquet", day2.iloc[20:])  # the operator replaces the file
    again = CliRunner().invoke(cli, [*base, *shlex.split(resume)[1:], "--scheduler", addr])
    assert again.exit_code == 0, again.output
    assert {s.state for s in Ledger(warehouse).batches(CONTRACT_NAME)} == {"succeeded"}
    assert_sound(url, oracle([good1, day2, day3]))
    assert_each_once(url, [day(1), day(2), day(3)])
    q_after = DeltaTable(f"{warehouse}/_etl_quarantine").to_pandas()
    assert len(q_after) == len(q)  # the resume did not quarantine day 1 again
    assert data_files_on_disk(url) <= referenced_paths(Location(url))  # nothing left staged
    report = verify_report(warehouse, contract_pipeline())
    assert report.ok, [f.message for f in report.findings]


def test_duplicate_key_split_across_files_is_quarantined_like_one_within_a_file(client, warehouse):
    """``Check.unique`` promises batch-wide uniqueness; a key in two files of one batch is a duplicate too."""
    rng = np.random.default_rng(67)
    folder = os.path.join(warehouse, "in", f"ds={day(1)}")
    a, b = _rows(rng, 10, 0, 100), _rows(rng, 10, 100, 200)
    b.loc[0, "k1"] = 5  # (5, 'b0') is in both files, with different ts
    _write(folder, "part-0.parquet", a)
    _write(folder, "part-1.parquet", b)
    r = etl.run(contract_pipeline(), date=day(1), warehouse=warehouse, client=client)
    assert r.quarantined == 2, f"{r.quarantined} row(s) quarantined; the key (5, 'b0') of both files passed"
    q = DeltaTable(f"{warehouse}/_etl_quarantine").to_pandas()
    assert sorted(q["check"]) == ["unique:k1,k2", "unique:k1,k2"]
    kept = pd.concat([a, b], ignore_index=True)
    assert_sound(f"{warehouse}/t", oracle([kept[kept.k1 != 5]]))
