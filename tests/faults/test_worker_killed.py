"""Issue 4, fault 1: a worker process SIGKILLed while it writes files, on a cluster of its own.

The kill happens once (an ``O_EXCL`` marker file), right after a worker has
written a staged file and before it could return the path: the file is on disk,
its task is lost. Dask reschedules the lost work on the surviving or the
replacement worker (a lost P2P shuffle restarts, so every merge task may run
twice); the run then commits exactly once, or fails cleanly with the table
unchanged and a rerun commits.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable

import etl
from etl.cli import cli
from etl.commit.cleanup import find_orphans, referenced_paths
from etl.io.storage import Location
from tests.core.helpers import data_files_on_disk, make_pipeline, oracle, random_batch, write_batch
from tests.faults._faults import KillAfterWrite, assert_each_once, assert_sound

DAYS = ("2026-01-01", "2026-01-02")


@pytest.fixture(scope="module")
def fragile_client():
    """A cluster of its own: two worker processes under nannies, which replace a killed worker."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as c:
        yield c


def test_worker_killed_after_writing_a_file_commits_once_or_not_at_all(fragile_client, warehouse, tmp_path):
    c, url, marker = fragile_client, f"{warehouse}/t", str(tmp_path / "killed")
    rng = np.random.default_rng(11)
    b1 = random_batch(rng, 120, key_space=40)
    b2 = random_batch(rng, 120, key_space=40, ts0=10_000)
    write_batch(warehouse, DAYS[0], b1, files=2)
    write_batch(warehouse, DAYS[1], b2, files=3)
    etl.run(make_pipeline(), date=DAYS[0], warehouse=warehouse, client=c)
    before = DeltaTable(url).version()

    c.register_plugin(KillAfterWrite(marker))
    try:
        try:
            first = etl.run(make_pipeline(), date=DAYS[1], warehouse=warehouse, client=c)
        except Exception as exc:  # failed cleanly: nothing committed
            first = exc
            assert DeltaTable(url).version() == before
            assert_sound(url, oracle([b1]))
    finally:
        c.unregister_worker_plugin(KillAfterWrite.name)
    assert os.path.exists(marker), "the fault was never injected"
    again = etl.run(make_pipeline(), date=DAYS[1], warehouse=warehouse, client=c)
    if isinstance(first, Exception):
        assert again.status == "committed"
    else:
        assert (first.status, again.status) == ("committed", "skipped") and again.version == first.version

    assert_sound(url, oracle([b1, b2]))
    assert_each_once(url, DAYS)
    root = Location(url)
    orphans = {o.path for o in find_orphans(root, grace_seconds=0)}
    assert not orphans & referenced_paths(root)
    with open(marker) as f:  # the file the killed task wrote is never live; clean finds it
        lost = json.load(f)["path"]
    assert lost not in referenced_paths(root)
    assert lost in orphans or isinstance(first, Exception)  # a failed run removes its own files
    out = CliRunner().invoke(cli, ["clean", "t", "--warehouse", warehouse, "--grace", "0"])
    assert out.exit_code == 0, out.output
    assert f"{len(orphans)} orphan file(s) removed" in out.output
    assert data_files_on_disk(url) <= referenced_paths(root)  # no orphan left
    assert_sound(url, oracle([b1, b2]))  # and no live file touched
