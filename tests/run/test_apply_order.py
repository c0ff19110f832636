"""MERGE apply tasks run longest first, so a stage does not end waiting on one long task."""

from __future__ import annotations

import importlib
import threading

import dask
import numpy as np
from distributed import Client, LocalCluster

stage = importlib.import_module("etl.run.stage")  # ``etl.run`` is also the run function

_ran: list = []
_lock = threading.Lock()


def _note(b: int) -> int:
    with _lock:
        _ran.append(b)
    return b


def test_the_scheduler_starts_the_apply_tasks_that_rewrite_most_rows_first():
    costs = np.array([5, 700, 30, 400, 10, 900, 60, 2, 80, 300])  # rows each group rewrites
    nbins = 6
    bins = np.array([0, 1, 2, 3, 4, 5, 0, 2, 4, 0])  # task 0 rewrites 5 + 60 + 300 rows
    loads = np.bincount(bins, weights=costs, minlength=nbins)
    build = stage._heaviest_first(costs, bins, nbins)
    _ran.clear()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        tasks = build(lambda b: dask.delayed(_note, pure=False)(b))
        assert sorted(client.gather(client.compute(tasks))) == list(range(nbins))
    assert _ran == sorted(range(nbins), key=lambda b: -loads[b])  # one thread: the run order is the priority order
    assert _ran == [5, 1, 3, 0, 4, 2]
