"""The quarantine table on real Delta tables: schema, exactly-once append per app id."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pandas as pd
import pytest
from deltalake import DeltaTable

from etl.contracts import (QUARANTINE_SCHEMA, Check, Contract, evaluate, quarantine_table, quarantine_url,
                           write_quarantine)
from etl.contracts.quarantine import TXN_PREFIX

AT = datetime(2026, 1, 2, 3, tzinfo=timezone.utc)
CONTRACT = Contract([Check.not_null("id", action="quarantine"), Check.in_range("q", 0, 10, action="quarantine")],
                    error_budget=None)


def batch_rows(n_bad: int = 3) -> pd.DataFrame:
    df = pd.DataFrame({"id": [None] * n_bad + [1.0], "q": [1] * n_bad + [5],
                       "_etl_source_file": "raw/f.parquet", "_etl_row": range(n_bad + 1)})
    return evaluate(CONTRACT, df)[1]


def test_the_arrow_table_has_the_documented_schema_and_values():
    t = quarantine_table([batch_rows(2), batch_rows(0), batch_rows(1)], run_id="r1", pipeline="p", batch="2026-01-01", at=AT)
    assert t.schema == QUARANTINE_SCHEMA
    assert t.column_names == ["run_id", "pipeline", "batch", "source_file", "row", "check", "column", "reason",
                              "raw", "quarantined_at"]
    assert t.to_pylist()[0] == {"run_id": "r1", "pipeline": "p", "batch": "2026-01-01",
                                "source_file": "raw/f.parquet", "row": 0, "check": "not_null:id", "column": "id",
                                "reason": "id is null", "raw": '{"id": null, "q": 1}', "quarantined_at": AT}
    assert t.num_rows == 3 and t.column("row").to_pylist() == [0, 1, 0]
    empty = quarantine_table([], run_id="r1", pipeline="p", batch="b", at=AT)
    assert empty.num_rows == 0 and empty.schema == QUARANTINE_SCHEMA


def test_a_batch_is_written_once_however_often_it_is_retried(tmp_path):
    url = quarantine_url(str(tmp_path))
    t = quarantine_table(batch_rows(3), run_id="r1", pipeline="p", batch="2026-01-01", at=AT)
    first = write_quarantine(url, t, app_id="etl:p:2026-01-01:aa")
    assert first.written and first.rows == 3
    assert DeltaTable(url).transaction_version(TXN_PREFIX + "etl:p:2026-01-01:aa") == 0  # 0 is a real version
    again = write_quarantine(url, t, app_id="etl:p:2026-01-01:aa")
    assert (again.written, again.version) == (False, first.version)
    other = write_quarantine(url, t, app_id="etl:p:2026-01-02:bb")
    assert other.written and other.version == first.version + 1
    assert DeltaTable(url).to_pyarrow_table().num_rows == 6
    assert DeltaTable(url).metadata().partition_columns == ["pipeline"]


def test_an_empty_quarantine_writes_nothing(tmp_path):
    url = quarantine_url(str(tmp_path))
    t = quarantine_table([], run_id="r1", pipeline="p", batch="b", at=AT)
    assert write_quarantine(url, t, app_id="a").written is False
    assert not DeltaTable.is_deltatable(url)


def test_concurrent_writers_of_the_same_batch_land_it_once(tmp_path):
    url = quarantine_url(str(tmp_path))
    t = quarantine_table(batch_rows(2), run_id="r1", pipeline="p", batch="b", at=AT)
    write_quarantine(url, quarantine_table(batch_rows(1), run_id="r0", pipeline="p", batch="a", at=AT), "other")
    gate, results = threading.Barrier(4), []

    def write():
        gate.wait()
        results.append(write_quarantine(url, t, app_id="same"))

    threads = [threading.Thread(target=write) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(r.written for r in results) == [False, False, False, True]
    assert len({r.version for r in results}) == 1
    assert DeltaTable(url).to_pyarrow_table().num_rows == 1 + 2


@pytest.mark.parametrize("frames", [batch_rows(2), [batch_rows(2)]])
def test_a_single_frame_or_a_list_is_accepted(frames):
    assert quarantine_table(frames, run_id="r", pipeline="p", batch="b", at=AT).num_rows == 2
