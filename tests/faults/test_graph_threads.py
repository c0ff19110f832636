"""Threads of one driver building Dask graphs at once must not deadlock (found by the overlap test).

``etl backfill --concurrency N`` stages N batches from N threads of one driver
process, and the in-process scheduler of a ``LocalCluster`` materialises graphs
in a thread of its own. On Python < 3.12 every ``functools.cached_property``
computes under one lock shared by all instances of its class, and dask-expr nests
them: two threads can each hold one and wait for the other's. The overlap test
hung that way (a backfill's four runs stuck for minutes in ``cached_property.__get__``
under ``MergeStager`` and ``Concat._divisions``, their heartbeats still renewing
their leases). ``_graph_threads`` builds that lock order deterministically.
"""

from __future__ import annotations

from tests.faults._faults import finish, spawn


def test_two_threads_building_dask_graphs_at_once_do_not_deadlock():
    code, out, err = finish(spawn("tests.faults._graph_threads"), timeout=120)
    assert "deadlocked" not in out, out + err[-2000:]
    assert (code, out.strip()) == (0, "done"), err[-3000:]
