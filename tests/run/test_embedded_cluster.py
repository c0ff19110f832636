"""The embedded default cluster: `etl run` with no client or scheduler starts one, in either shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import deltalake
import pytest

from etl.run.cluster import local_processes


@pytest.mark.parametrize("processes", ["", "1"])
def test_cli_run_on_the_embedded_cluster_commits_the_example(tmp_path, processes):
    env = {**os.environ, "ETL_LOCAL_PROCESSES": processes, "ETL_WORKERS": "2"}
    done = subprocess.run([sys.executable, "-m", "etl.cli", "run", "revenue_by_segment_daily", "--warehouse",
                           str(tmp_path), "--param", "demo_orders=300", "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["status"] == "committed" and result["inserted"] > 0
    table = deltalake.DeltaTable(result["table"])
    assert table.to_pyarrow_table().num_rows == result["inserted"]
    shape = "2 worker processes" if processes else "one in-process worker, 2 threads"
    assert shape in done.stderr


@pytest.mark.parametrize("value, processes", [("", False), ("0", False), ("1", True), ("true", True),
                                               ("YES", True)])
def test_embedded_cluster_shape_follows_the_environment(monkeypatch, value, processes):
    monkeypatch.setenv("ETL_LOCAL_PROCESSES", value)
    assert local_processes() is processes
