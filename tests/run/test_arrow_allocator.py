"""Arrow's allocator keeps freed memory for a while in every process that imports etl (and its workers)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from etl.run.allocator import PURGE_DELAY_MS

_PROBE = """
import etl, pyarrow as pa
from distributed import Client, LocalCluster
pa.allocate_buffer(1 << 20)
with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as c, Client(c) as cl:
    print("worker", list(cl.run(lambda: __import__("os").environ.get("MIMALLOC_PURGE_DELAY")).values())[0])
"""


def _mimalloc_options(env_extra: dict) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MIMALLOC_PURGE_DELAY", "ETL_MALLOC_TUNING")}
    env.update(MIMALLOC_VERBOSE="1", **env_extra)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    delay = [line.split(":")[1].strip() for line in out.stderr.splitlines() if "option 'purge_delay'" in line]
    worker = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("worker ")]
    return delay[0], worker[0]


@pytest.mark.parametrize("env_extra,expected", [
    ({}, str(PURGE_DELAY_MS)),                       # set by `import etl`, read by pyarrow's mimalloc
    ({"MIMALLOC_PURGE_DELAY": "-1"}, "-1"),          # the user's own setting wins
])
def test_import_etl_sets_arrow_allocator_purge_delay_for_this_process_and_its_workers(env_extra, expected):
    delay, worker = _mimalloc_options(env_extra)
    assert delay == expected  # what mimalloc itself reports it uses
    assert worker == expected  # Dask worker processes inherit it


def test_malloc_tuning_off_leaves_arrow_allocator_alone():
    delay, worker = _mimalloc_options({"ETL_MALLOC_TUNING": "0"})
    assert delay != str(PURGE_DELAY_MS) and worker == "None"
