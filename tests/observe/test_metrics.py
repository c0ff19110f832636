"""Prometheus metrics of a run: valid exposition format, the right values, atomic files."""

from __future__ import annotations

import json
import os
import stat

import pytest
from prometheus_client.parser import text_string_to_metric_families

from etl import RunResult
from etl.observe import metrics
from etl.observe.metrics import failure_text, main, prometheus_text, write_failure, write_prometheus

RESULT = RunResult("tpch_lineitem_daily", "r20260102T020000-0a1b2c3d", "2026-01-02", "s3://bucket/wh/lineitem",
                   "committed", 7, "etl:tpch_lineitem_daily:2026-01-02:abc", rows_read=1200, rows_in=1100,
                   inserted=100, updated=40, deleted=2, unchanged=958, delete_not_found=3, quarantined=4, files_added=5, files_removed=3, attempts=2,
                   wall_seconds=12.5, stages={"rows_read": 1200, "read_transform_seconds": 2.25,
                                              "apply_seconds": 4.0, "commit_seconds": 0.125, "peak_memory": {
                                                  "read_transform": {"cluster_bytes": 6 * 2**30,
                                                                     "worker_bytes": 2**31, "worker": "tcp://w:1",
                                                                     "worker_limit_ratio": 0.5, "workers": 4},
                                                  "commit": {"cluster_bytes": 2**30, "worker_bytes": 2**28,
                                                             "worker": "tcp://w:2", "worker_limit_ratio": None,
                                                             "workers": 4}}})


def samples(text: str) -> dict:
    """{(name, frozenset(labels)): value}, parsed by the Prometheus client's own parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation, family.name
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def get(parsed: dict, name: str, **labels):
    return parsed[(name, frozenset({"pipeline": "tpch_lineitem_daily", **labels}.items()))]


def test_a_run_result_becomes_valid_exposition_text_with_its_figures():
    parsed = samples(prometheus_text(RESULT, now=1_767_319_200.0))
    assert get(parsed, "etl_run_rows", kind="inserted") == 100
    assert get(parsed, "etl_run_rows", kind="updated") == 40
    assert get(parsed, "etl_run_rows", kind="deleted") == 2
    assert get(parsed, "etl_run_rows", kind="delete_not_found") == 3
    assert get(parsed, "etl_run_rows", kind="quarantined") == 4
    assert get(parsed, "etl_run_rows", kind="read") == 1200
    assert get(parsed, "etl_run_files", kind="removed") == 3
    assert get(parsed, "etl_run_duration_seconds", stage="total") == 12.5
    assert get(parsed, "etl_run_duration_seconds", stage="apply") == 4.0
    assert get(parsed, "etl_run_duration_seconds", stage="commit") == 0.125
    assert ("etl_run_duration_seconds", frozenset({"pipeline": "tpch_lineitem_daily", "stage": "rows_read"}.items())
            ) not in parsed  # a count, not a duration
    assert get(parsed, "etl_run_peak_memory_bytes", stage="read_transform", scope="cluster") == 6 * 2**30
    assert get(parsed, "etl_run_peak_memory_bytes", stage="read_transform", scope="worker") == 2**31
    assert get(parsed, "etl_run_peak_memory_limit_ratio", stage="read_transform") == 0.5
    assert get(parsed, "etl_run_peak_memory_bytes", stage="commit", scope="worker") == 2**28
    assert ("etl_run_peak_memory_limit_ratio", frozenset({"pipeline": "tpch_lineitem_daily", "stage": "commit"}.items())
            ) not in parsed  # no memory limit: left out, not zeroed
    assert get(parsed, "etl_run_table_version", table="s3://bucket/wh/lineitem") == 7
    assert get(parsed, "etl_run_commit_attempts") == 2
    assert [get(parsed, "etl_run_status", status=s) for s in metrics.STATUSES] == [1, 0, 0, 0]
    assert get(parsed, "etl_run_exit_code") == 0
    assert get(parsed, "etl_run_last_success_timestamp_seconds") == 1_767_319_200.0
    assert get(parsed, "etl_run_info", batch="2026-01-02", run_id=RESULT.run_id, table=RESULT.table) == 1


def test_unknown_values_are_left_out_not_zeroed():
    from dataclasses import replace

    parsed = samples(prometheus_text(replace(RESULT, rows_read=None, version=None, status="skipped")))
    names = {name for name, _ in parsed}
    assert "etl_run_table_version" not in names
    assert ("etl_run_rows", frozenset({"pipeline": "tpch_lineitem_daily", "kind": "read"}.items())) not in parsed
    assert get(parsed, "etl_run_status", status="skipped") == 1  # skipped is a success
    assert "etl_run_last_success_timestamp_seconds" in names


def test_label_values_are_escaped():
    from dataclasses import replace

    odd = 'we"ird\\name\nx'
    parsed = samples(prometheus_text(replace(RESULT, pipeline=odd)))
    assert parsed[("etl_run_exit_code", frozenset({"pipeline": odd}.items()))] == 0


def test_write_is_atomic_readable_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    path = tmp_path / "textfile" / "etl.prom"
    write_prometheus(RESULT, path, now=1.0)
    assert samples(path.read_text()) == samples(prometheus_text(RESULT, now=1.0))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    old = path.read_text()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_prometheus(RESULT, path, now=2.0)
    assert path.read_text() == old  # the collector still sees the whole previous file
    assert os.listdir(path.parent) == ["etl.prom"]


def test_a_failed_run_reports_its_exit_code_and_keeps_the_last_success(tmp_path):
    path = tmp_path / "etl.prom"
    write_prometheus(RESULT, path, now=1000.0)
    write_failure("tpch_lineitem_daily", 5, path, now=2000.0)
    parsed = samples(path.read_text())
    assert get(parsed, "etl_run_exit_code") == 5
    assert [get(parsed, "etl_run_status", status=s) for s in metrics.STATUSES] == [0, 0, 0, 1]
    assert get(parsed, "etl_run_timestamp_seconds") == 2000.0
    assert get(parsed, "etl_run_last_success_timestamp_seconds") == 1000.0
    first_ever = samples(failure_text("other", 3, now=5.0))
    assert not any(name == "etl_run_last_success_timestamp_seconds" for name, _ in first_ever)


def test_command_line_converts_etl_run_json(tmp_path):
    result = tmp_path / "result.json"
    result.write_text(json.dumps({**RESULT.to_dict(), "a_field_from_a_newer_version": 1}))
    out = tmp_path / "etl.prom"
    assert main([str(result), str(out)]) == 0
    assert get(samples(out.read_text()), "etl_run_rows", kind="inserted") == 100
    assert get(samples(out.read_text()), "etl_run_peak_memory_bytes", stage="read_transform", scope="cluster") \
        == 6 * 2**30
    assert main(["--failed", "tpch_lineitem_daily", "--exit-code", "8", str(out)]) == 0
    assert get(samples(out.read_text()), "etl_run_exit_code") == 8
