"""`etl run --scheduler tcp://...` on hosts that have etl installed but not the pipeline's code."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from etl.run import allocator
from tests.cluster.helpers import MODULE, REPO, assert_table_matches_oracle, free_port, host_env


# a lambda: shipped by value (the workers cannot import this test module)
_malloc_tuning = lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"),  # noqa: E731
                          tuple(sorted(importlib.import_module("etl.run.allocator").APPLIED.items())))


@pytest.mark.cluster
def test_cli_run_ships_the_pipeline_to_plain_tcp_workers(tmp_path, hosts, empty_dir):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    hosts.start("scheduler.sh", empty_dir, ETL_TLS="0", ETL_SCHEDULER_HOST="127.0.0.1",
                ETL_SCHEDULER_PORT=str(port), ETL_DASHBOARD_ADDRESS="127.0.0.1:0")
    hosts.start("worker.sh", empty_dir, ETL_TLS="0", ETL_SCHEDULER=address, ETL_NWORKERS="2",
                ETL_MEMORY_LIMIT="1GiB", ETL_WORKER_HOST="127.0.0.1")
    warehouse = str(tmp_path / "warehouse")

    with hosts.client(address, n_workers=2) as client:
        # The workers cannot import the pipeline by themselves: it must come from `etl run`.
        seen = client.run(lambda: (os.getcwd(), os.environ.get("PYTHONPATH"),
                                   importlib.util.find_spec(MODULE) is None,
                                   any("pipelines" in p for p in sys.path)))
        assert set(seen.values()) == {(str(empty_dir), None, True, False)}, seen
        assert set(client.run(_malloc_tuning).values()) == {("65536", ())}  # as Dask's nanny starts them

        done = subprocess.run(
            ["etl", "run", "tpch_lineitem_daily", "--scheduler", address, "--warehouse", warehouse,
             "--param", "demo_orders=2000", "--json"],
            cwd=REPO, env=host_env(), capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{hosts.output()}"
        result = json.loads(done.stdout)
        assert result["status"] == "committed", result
        assert client.run(lambda: MODULE in sys.modules) == {a: True for a in seen}
        # the run raised glibc's malloc thresholds that the nanny's MALLOC_TRIM_THRESHOLD_ froze
        tuned = (("mmap_threshold", allocator.MMAP_THRESHOLD), ("trim_threshold", allocator.TRIM_THRESHOLD))
        assert set(client.run(_malloc_tuning).values()) == {("65536", tuned)}

    assert_table_matches_oracle(warehouse)
