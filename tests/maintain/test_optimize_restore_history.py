"""optimize, restore and history on a table made by real runs, through the command line."""

from __future__ import annotations

import json

import pandas as pd
from deltalake import DeltaTable

from etl.commands.maintenance import table_history_rows


def _content(url: str, version: int | None = None) -> pd.DataFrame:
    df = DeltaTable(url, version=version).to_pandas()
    return df.sort_values(["l_orderkey", "l_linenumber"]).reset_index(drop=True)


def _files(url: str) -> int:
    return DeltaTable(url).get_add_actions(flatten=True).num_rows


def test_optimize_compacts_small_files_keeps_content_and_batches_and_is_recorded(lineitem, etl_cli):
    url, wh = lineitem.url, lineitem.warehouse
    before, files_before, version = _content(url), _files(url), DeltaTable(url).version()

    out = etl_cli("optimize", "lineitem", "--warehouse", wh, "--json")

    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["files_before"] == files_before and d["files_after"] == _files(url) < files_before
    assert d["version"] == version + 1 == DeltaTable(url).version()
    pd.testing.assert_frame_equal(_content(url), before)
    entry = DeltaTable(url).history(1)[0]
    assert entry["operation"] == "OPTIMIZE" and entry["etl.operation"] == "OPTIMIZE"
    assert entry["etl.run_id"] == d["run_id"] and json.loads(entry["etl.params"])["z_order"] == []
    dt = DeltaTable(url)  # the batches' exactly-once records survive compaction
    assert all(dt.transaction_version(r.app_id) is not None for r in lineitem.runs)

    again = json.loads(etl_cli("optimize", "lineitem", "--warehouse", wh, "--json").stdout)
    assert again["version"] is None and DeltaTable(url).version() == version + 1  # nothing left: no commit


def test_z_order_rewrites_by_the_column_and_refuses_partition_columns(lineitem, etl_cli):
    url, wh = lineitem.url, lineitem.warehouse
    before = _content(url)
    out = etl_cli("optimize", "lineitem", "--warehouse", wh, "--z-order", "l_orderkey", "--target-size", "8")
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith("z-ordered by l_orderkey")
    entry = DeltaTable(url).history(1)[0]
    assert json.loads(entry["etl.params"]) == {"target_size_mb": 8.0, "z_order": ["l_orderkey"]}
    pd.testing.assert_frame_equal(_content(url), before)

    bad = etl_cli("optimize", "lineitem", "--warehouse", wh, "--z-order", "ship_month")
    assert bad.exit_code == 3 and "partition column" in bad.output
    assert etl_cli("optimize", "lineitem", "--warehouse", wh, "--z-order", "nope").exit_code == 3


def test_restore_brings_back_an_earlier_version_as_a_recorded_commit(lineitem, etl_cli):
    url, wh = lineitem.url, lineitem.warehouse
    v1, v2 = _content(url, version=1), _content(url)
    assert not v1.equals(v2)

    out = etl_cli("restore", "lineitem", "--warehouse", wh, "--version", "1", "--json")

    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert (d["restored_version"], d["version_before"], d["version"]) == (1, 2, 3)
    pd.testing.assert_frame_equal(_content(url), v1)
    pd.testing.assert_frame_equal(_content(url, version=2), v2)  # history is not rewritten
    entry = DeltaTable(url).history(1)[0]
    assert entry["operation"] == "RESTORE" and entry["etl.operation"] == "RESTORE"
    assert entry["etl.run_id"] == d["run_id"] and json.loads(entry["etl.params"]) == {"from_version": 2, "version": 1}

    bad = etl_cli("restore", "lineitem", "--warehouse", wh, "--version", "3")
    assert bad.exit_code == 3 and "from 0 to 2" in bad.output
    assert etl_cli("restore", "nope", "--warehouse", wh, "--version", "0").exit_code == 3


def test_history_shows_who_wrote_what(lineitem, etl_cli):
    wh, (first, second) = lineitem.warehouse, lineitem.runs
    out = etl_cli("history", "lineitem", "--warehouse", wh, "--json")
    assert out.exit_code == 0, out.output
    commits = json.loads(out.stdout)
    assert commits == table_history_rows("lineitem", wh)
    assert [c["version"] for c in commits] == [2, 1, 0]
    assert [c["run_id"] for c in commits] == [second.run_id, first.run_id, None]
    assert [c["batch"] for c in commits[:2]] == [second.batch, first.batch]
    for c, run in zip(commits, (second, first)):
        assert c["pipeline"] == "tpch_lineitem_daily" and c["operation"] == "MERGE" and c["code_version"]
        assert (c["inserted"], c["updated"], c["deleted"]) == (run.inserted, run.updated, run.deleted)
    assert commits[2]["operation"] == "CREATE TABLE" and commits[2]["inserted"] is None

    assert [c["version"] for c in table_history_rows("lineitem", wh, limit=1)] == [2]
    text = etl_cli("history", "lineitem", "--warehouse", wh).stdout.splitlines()  # not a terminal: plain text
    assert len(text) == 4 and text[0].split()[:2] == ["version", "timestamp"]
    assert text[1].split()[0] == "2" and second.run_id in text[1]
    assert text[2].split()[0] == "1" and first.run_id in text[2]


def test_history_labels_maintenance_commits(lineitem, etl_cli):
    wh = lineitem.warehouse
    restore = json.loads(etl_cli("restore", "lineitem", "--warehouse", wh, "--version", "1", "--json").stdout)
    vacuum = json.loads(etl_cli("vacuum", "lineitem", "--warehouse", wh, "--retention-hours", "0",
                                "--force-retention", "--json").stdout)
    rows = table_history_rows("lineitem", wh, limit=3)
    assert [(r["operation"], r["run_id"]) for r in rows] == [
        ("VACUUM (VACUUM END)", vacuum["run_id"]), ("VACUUM (VACUUM START)", vacuum["run_id"]),
        ("RESTORE", restore["run_id"])]
    assert vacuum["files"]  # the restore removed version 2's files: the vacuum deleted them
