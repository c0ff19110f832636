"""`etl run` / `etl backfill` on a scheduler address: JSON and metrics with peak memory, a Dask performance report."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from etl.cli import cli
from etl.observe.report import _scheduler_bokeh, bokeh_problem, performance_report
from tests.core.helpers import random_batch, write_batch

MODULE = '''"""A MERGE pipeline whose transform runs a task of its own name, to find in the task stream."""
import dask.dataframe as dd
from etl import Schema, Source, Target, pipeline


def {marker}(df):
    return df


@pipeline(name="{name}", sources={{"src": Source.parquet("{{warehouse}}/in/ds={{date}}/*.parquet")}},
          target=Target.merge("{name}", keys=["k1", "k2"], partition_by=["part"], order_by="ts",
                              delete_when="op_delete"),
          schema=Schema({{"k1": "int64", "k2": "string", "part": "string", "v": "float64", "s": "string",
                         "ts": "int64"}}))
def {name}(src: dd.DataFrame) -> dd.DataFrame:
    """Upsert the day's rows."""
    return src.map_partitions({marker}, meta=src._meta)
'''


def _pipelines(tmp_path: Path, name: str, marker: str) -> str:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / f"{name}.py").write_text(MODULE.format(name=name, marker=marker))
    return str(folder)


def _etl(*args: str):
    out = CliRunner().invoke(cli, list(args))
    assert out.exit_code == 0, out.output
    return out


def _assert_report(path: Path, marker: str) -> None:
    html = path.read_text()
    assert "<title>Dask Performance Report</title>" in html and "Bokeh" in html
    assert '"title":"Task Stream"' in html and '"title":"Worker Profile (compute)"' in html
    assert f"{marker}-" in html  # the pipeline's own tasks (fused keys, e.g. "_read_one-...-{marker}-...")


def test_performance_report_is_optional_and_says_what_to_install_where():
    with performance_report(None) as report:
        assert report is None
    for found in (None, "2.4.3", "3.0.9"):  # what the scheduler has (the scheduler renders the report)
        problem = bokeh_problem(found)
        assert 'pip install "etl[report]"' in problem and "where the Dask scheduler runs" in problem, found
    assert "it has bokeh 2.4.3" in bokeh_problem("2.4.3") and "not installed" in bokeh_problem(None)
    assert bokeh_problem("3.1.0") is None and bokeh_problem("3.10.1") is None


def test_the_scheduler_reports_the_bokeh_it_renders_with(client):
    assert _scheduler_bokeh(client) == version("bokeh")


def test_etl_run_on_a_scheduler_address_reports_memory_in_json_and_metrics_and_writes_a_report(
        tmp_path, client, warehouse):
    pipelines = _pipelines(tmp_path, "t_report_run", "report_marker_run")
    write_batch(warehouse, "2026-01-02", random_batch(np.random.default_rng(3), 2_000))
    report, prom = tmp_path / "out" / "run.html", tmp_path / "etl.prom"
    (tmp_path / "out").mkdir()
    out = _etl("--pipelines", pipelines, "run", "t_report_run", "--date", "2026-01-02", "--warehouse", warehouse,
               "--scheduler", client.scheduler.address, "--json", "--metrics-file", str(prom),
               "--performance-report", str(report))
    result = json.loads(out.stdout)
    assert result["status"] == "committed"
    peaks = result["stages"]["peak_memory"]
    workers = client.scheduler_info()["workers"]
    assert list(peaks) == ["read_transform", "stage", "commit"]
    assert all(0 < p["worker_bytes"] <= p["cluster_bytes"] and p["workers"] == len(workers) for p in peaks.values())
    metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(prom.read_text()) for s in f.samples}
    for stage, peak in peaks.items():
        for scope, key in (("cluster", "cluster_bytes"), ("worker", "worker_bytes")):
            labels = (("pipeline", "t_report_run"), ("scope", scope), ("stage", stage))
            assert metrics[("etl_run_peak_memory_bytes", labels)] == peak[key]
    _assert_report(report, "report_marker_run")


def test_etl_backfill_writes_one_report_of_its_batches(tmp_path, client, warehouse):
    pipelines = _pipelines(tmp_path, "t_report_backfill", "report_marker_backfill")
    for day, seed in (("2026-01-02", 4), ("2026-01-03", 5)):
        write_batch(warehouse, day, random_batch(np.random.default_rng(seed), 500))
    report = tmp_path / "backfill.html"
    out = _etl("--pipelines", pipelines, "backfill", "t_report_backfill", "--start", "2026-01-02",
               "--end", "2026-01-03", "--warehouse", warehouse, "--scheduler", client.scheduler.address, "--json",
               "--performance-report", str(report))
    assert [b["status"] for b in json.loads(out.stdout)["batches"]] == ["committed", "committed"]
    _assert_report(report, "report_marker_backfill")
