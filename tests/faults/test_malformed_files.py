"""Issue 4: a malformed file fails its batch naming it, or is quarantined whole, as the source declares.

Real files (a Parquet file cut in half, a CSV with an unterminated quote), real
Delta tables, the session's LocalCluster. With ``on_malformed="quarantine"``
the good files commit, the bad one is one quarantine record committed by the
same run, and a rerun adds nothing; with the default ``"fail"`` the batch fails
naming the file and the table stays at its version.
"""

from __future__ import annotations

import json
import os

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

import etl
from etl import Source, Target, pipeline
from etl.contracts import Check, Contract
from etl.errors import ConfigError
from etl.ledger.store import Ledger
from tests.core.helpers import SCHEMA, data_files_on_disk, oracle, random_batch, table_frame

DAY, DAY2 = "2026-01-01", "2026-01-02"
NAME = "t_malformed"


def _pipe(source: Source, contract: Contract | None = None):
    def typed(src: dd.DataFrame) -> dd.DataFrame:  # CSV gives objects; Parquet already has these types
        return src.astype({"k2": "string", "part": "string", "s": "string"})

    return pipeline(name=NAME, sources={"src": source},
                    target=Target.merge("t", keys=["k1", "k2"], partition_by=["part"], order_by="ts",
                                        delete_when="op_delete"),
                    schema=SCHEMA, contract=contract)(typed)


def _parquet(on_malformed: str = "fail") -> Source:
    return Source.parquet("{warehouse}/in/ds={date}/*.parquet", on_malformed=on_malformed)


def _csv(on_malformed: str = "fail") -> Source:
    return Source.csv("{warehouse}/in/ds={date}/*.csv", on_malformed=on_malformed)


def _batch(seed: int, n: int = 40, ts0: int = 0) -> pd.DataFrame:
    b = random_batch(np.random.default_rng(seed), n, key_space=10_000, ts0=ts0, delete_frac=0.0)
    return b.drop_duplicates(["k1", "k2"]).assign(v=lambda d: d.v.clip(-1.5, 1.5))


def _day(warehouse: str, date: str, parts: list[pd.DataFrame], fmt: str, broken: int | None = None) -> list[str]:
    """Write one file per part (``part-<i>.<fmt>``); the ``broken`` one is made malformed. Returns the paths."""
    folder = os.path.join(warehouse, "in", f"ds={date}")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, df in enumerate(parts):
        path = os.path.join(folder, f"part-{i}.{fmt}")
        if fmt == "parquet":
            df.to_parquet(path, index=False)
            if i == broken:  # the footer is gone
                data = open(path, "rb").read()
                open(path, "wb").write(data[: len(data) // 2])
        else:
            df.to_csv(path, index=False)
            if i == broken:  # a quoted field that never ends: the parser cannot tokenise the file
                with open(path, "a") as f:
                    f.write('9,"b0,p0,0.5,s0,1,False\n')
        paths.append(path)
    return paths


def _quarantine(warehouse: str) -> pd.DataFrame:
    return DeltaTable(f"{warehouse}/_etl_quarantine").to_pandas()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_malformed_file_declared_quarantine_is_set_aside_whole_and_the_good_rows_commit(client, warehouse,
                                                                                           fmt):
    good = [_batch(1), _batch(2, ts0=100)]
    good[1] = good[1][~good[1].set_index(["k1", "k2"]).index.isin(good[0].set_index(["k1", "k2"]).index)]
    paths = _day(warehouse, DAY, [good[0], _batch(3, ts0=200), good[1]], fmt, broken=1)
    source = _parquet("quarantine") if fmt == "parquet" else _csv("quarantine")

    r = etl.run(_pipe(source), date=DAY, warehouse=warehouse, client=client)
    assert r.status == "committed" and r.inserted == sum(len(g) for g in good)
    pd.testing.assert_frame_equal(table_frame(f"{warehouse}/t"), oracle(good))
    q = _quarantine(warehouse)
    assert len(q) == 1, q
    rec = q.iloc[0]
    assert rec["source_file"] == paths[1] and rec["check"] == "malformed_file"
    assert pd.isna(rec["row"]) and pd.isna(rec["column"])
    assert rec["run_id"] == r.run_id and rec["batch"] == DAY and rec["pipeline"] == NAME
    error = "ArrowInvalid" if fmt == "parquet" else "ParserError"
    assert rec["reason"].startswith(f"malformed {fmt} file: {error}: ")
    raw = json.loads(rec["raw"])
    assert raw["file"] == paths[1] and raw["bytes"] == os.path.getsize(paths[1]) and raw["error"] == error
    # counted: a whole file is one quarantine record, and reconciliation still balances
    assert r.quarantined == 1
    if fmt == "parquet":
        assert r.rows_read == r.inserted + r.quarantined + r.duplicates_dropped
    state = Ledger(warehouse).state(NAME, DAY)
    assert state.state == "succeeded" and state.rows["quarantined"] == 1
    sources = json.loads(DeltaTable(f"{warehouse}/t").history(1)[0]["etl.sources"])
    assert sources[0]["malformed_files"] == 1 and sources[0]["files"] == 3

    version, on_disk = DeltaTable(f"{warehouse}/t").version(), data_files_on_disk(f"{warehouse}/t")
    again = etl.run(_pipe(source), date=DAY, warehouse=warehouse, client=client)
    assert again.status == "skipped" and again.version == version
    assert DeltaTable(f"{warehouse}/t").version() == version and data_files_on_disk(f"{warehouse}/t") == on_disk
    assert len(_quarantine(warehouse)) == 1


def test_a_crash_after_the_quarantine_commit_is_redone_without_a_second_record(client, warehouse):
    good = _batch(4)
    _day(warehouse, DAY, [good, _batch(5, ts0=100)], "parquet", broken=1)

    def crash(point: str) -> None:
        if point == "before_commit":
            raise RuntimeError("driver lost before the data commit")

    with pytest.raises(RuntimeError, match="driver lost"):
        etl.run(_pipe(_parquet("quarantine")), date=DAY, warehouse=warehouse, client=client, hook=crash)
    assert len(_quarantine(warehouse)) == 1 and DeltaTable(f"{warehouse}/t").version() == 0
    r = etl.run(_pipe(_parquet("quarantine")), date=DAY, warehouse=warehouse, client=client)
    assert r.status == "committed"
    pd.testing.assert_frame_equal(table_frame(f"{warehouse}/t"), oracle([good]))
    assert len(_quarantine(warehouse)) == 1  # the rerun found its quarantine commit and did not repeat it


def test_malformed_files_and_bad_rows_share_one_quarantine_commit_and_the_error_budget(client, warehouse):
    rows = [_batch(6), _batch(7, ts0=100)]
    rows[0].loc[rows[0].index[:3], "v"] = 99.0  # out of range: quarantined rows
    paths = _day(warehouse, DAY, [rows[0], _batch(8, ts0=200), rows[1]], "parquet", broken=1)
    checks = [Check.in_range("v", -2.0, 2.0, action="quarantine")]

    with pytest.raises(etl.ContractError, match="1 of 3 files set aside as malformed") as info:
        etl.run(_pipe(_parquet("quarantine"), Contract(checks, error_budget=0.2)), date=DAY, warehouse=warehouse,
                client=client)  # 3 rows are within 20 % of the rows, 1 file of 3 is not within 20 % of the files
    assert info.value.files_quarantined == 1 and info.value.exit_code == 7
    assert DeltaTable(f"{warehouse}/t").version() == 0 and table_frame(f"{warehouse}/t").empty
    assert not DeltaTable.is_deltatable(f"{warehouse}/_etl_quarantine")

    r = etl.run(_pipe(_parquet("quarantine"), Contract(checks, error_budget=0.5)), date=DAY, warehouse=warehouse,
                client=client)
    assert r.status == "committed" and r.quarantined == 3 + 1
    q = _quarantine(warehouse)
    assert sorted(q["check"]) == ["in_range:v"] * 3 + ["malformed_file"]
    assert set(q["run_id"]) == {r.run_id} and q.loc[q["check"] == "malformed_file", "source_file"].tolist() == [
        paths[1]]
    kept = pd.concat([rows[0].iloc[3:], rows[1]], ignore_index=True)
    pd.testing.assert_frame_equal(table_frame(f"{warehouse}/t"), oracle([kept]))
    assert r.rows_read == r.inserted + r.updated + r.unchanged + r.quarantined + r.duplicates_dropped


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_malformed_file_fails_its_batch_by_default_naming_the_file(client, warehouse, fmt):
    source = _parquet() if fmt == "parquet" else _csv()
    first = _batch(9)
    _day(warehouse, DAY, [first], fmt)
    etl.run(_pipe(source), date=DAY, warehouse=warehouse, client=client)
    version, before = DeltaTable(f"{warehouse}/t").version(), table_frame(f"{warehouse}/t")

    paths = _day(warehouse, DAY2, [_batch(10, ts0=1_000), _batch(11, ts0=2_000)], fmt, broken=1)
    with pytest.raises(etl.SourceError) as info:
        etl.run(_pipe(source), date=DAY2, warehouse=warehouse, client=client)
    assert paths[1] in str(info.value) and info.value.file == paths[1] and info.value.exit_code == 5
    assert DeltaTable(f"{warehouse}/t").version() == version
    pd.testing.assert_frame_equal(table_frame(f"{warehouse}/t"), before)
    assert not DeltaTable.is_deltatable(f"{warehouse}/_etl_quarantine")
    assert Ledger(warehouse).state(NAME, DAY2).state == "failed"


def test_a_batch_whose_every_file_is_malformed_fails_rather_than_commit_nothing(client, warehouse):
    paths = _day(warehouse, DAY, [_batch(12)], "parquet", broken=0)
    with pytest.raises(etl.SourceError, match="every one of its 1 file") as info:
        etl.run(_pipe(_parquet("quarantine")), date=DAY, warehouse=warehouse, client=client)
    assert paths[0] in str(info.value)
    assert not DeltaTable.is_deltatable(f"{warehouse}/_etl_quarantine")


def test_the_declaration_is_checked():
    with pytest.raises(ConfigError, match="on_malformed"):
        Source.parquet("{warehouse}/in/*.parquet", on_malformed="skip")
    with pytest.raises(ConfigError, match="Delta table"):
        Source.delta("{warehouse}/t", on_malformed="quarantine")
    assert _pipe(_parquet()).contract is None
    implied = _pipe(_parquet("quarantine")).contract  # the quarantine path, with no row checks and no budget
    assert implied is not None and implied.checks == () and implied.error_budget is None
    declared = Contract([Check.not_null("k1")], error_budget=3)
    assert _pipe(_parquet("quarantine"), declared).contract is declared
