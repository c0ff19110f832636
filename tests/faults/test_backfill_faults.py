"""Issue 4, faults 4 and 5: a backfill retrying a batch whose commit landed behind an error; two
backfills over overlapping ranges at once; another driver starting a batch while a backfill plans.

``etl.run.backfill.backfill`` takes no hook, so the faults go in through a
wrapper around ``etl.run.runner.run`` (which the backfill looks up at call
time) that passes a ``hook=`` of its own. Backfills that run batches in
threads run in driver processes of their own (``_backfill_driver``): on
Python 3.11 threads building Dask graphs at once can deadlock (see the
report), and a hung driver must fail its test, not the session.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from etl.errors import CommitError
from etl.ledger import Event
from etl.ledger.store import Ledger
from etl.run import backfill as backfill_module, runner
from etl.run.backfill import backfill
from etl.run.record import RunRecorder
from tests.core.helpers import make_pipeline, oracle
from tests.faults._faults import (assert_each_once, assert_sound, commits_by_batch, data_commits, day, finish,
                                  spawn, verify_report, wait_for, write_days)

DEADLINE = 120.0


def _with_hook(monkeypatch, make_hook):
    """Make every run of a backfill call ``make_hook(dates)(point)`` at the commit's hook points."""
    real = runner.run

    def run(*args, **kw):
        return real(*args, hook=make_hook(tuple(kw["date"])), **kw)

    monkeypatch.setattr(runner, "run", run)


@pytest.mark.parametrize("where", ["after_commit", "ledger_succeeded"])
def test_backfill_retry_finds_the_commit_that_landed_behind_an_error(client, warehouse, monkeypatch, where):
    """The commit of 01-02 lands, then its run fails (a lost response, or the ledger store refusing the
    success record); the backfill's retry must find the commit and skip, never commit again."""
    batches = write_days(warehouse, 2, seed=4)
    p, url, victim = make_pipeline(), f"{warehouse}/t", (day(2),)
    points = Counter()

    def make_hook(dates):
        def hook(point):
            points[dates, point] += 1
            if where == "after_commit" and (dates, point) == (victim, "after_commit") and points[dates, point] == 1:
                raise CommitError("connection reset while reading the commit's response; the commit may have "
                                  "landed")
        return hook

    _with_hook(monkeypatch, make_hook)
    if where == "ledger_succeeded":
        real_succeeded, refused = RunRecorder.succeeded, []

        def succeeded(self, *args, **kw):
            if self.batch == victim[0] and not refused:
                refused.append(self.run_id)
                self.stop()
                raise CommitError(f"ledger {self.ledger.location}: appending 1 event(s) failed: store timeout")
            return real_succeeded(self, *args, **kw)

        monkeypatch.setattr(RunRecorder, "succeeded", succeeded)

    r = backfill(p, day(1), day(2), warehouse=warehouse, client=client)
    assert r.ok, r.errors
    assert {b: x.status for b, x in r.results.items()} == {day(1): "committed", day(2): "skipped"}
    assert points[victim, "before_commit"] == 1  # the retry never staged or committed again
    assert_sound(url, oracle(batches))
    assert_each_once(url, [day(1), day(2)])
    [(app_id, _)] = [(a, n) for a, n in data_commits(url).items() if f":{victim[0]}:" in a]
    state = Ledger(warehouse).state(p.name, victim[0])
    assert (state.state, state.app_id, state.version) == ("succeeded", app_id, r.results[victim[0]].version)
    attempts = [a.status for a in Ledger(warehouse).runs(p.name) if a.batch == victim[0]]
    assert attempts == (["failed", "succeeded"] if where == "after_commit" else ["abandoned", "succeeded"])
    report = verify_report(warehouse, p)
    assert report.ok, [f.message for f in report.findings]


def test_two_backfills_over_overlapping_ranges_at_once(client, warehouse, tmp_path):
    """Backfill A (01..04) and backfill B (03..06), concurrency 2 each, from two driver processes.

    Forced interleaving on the shared batch 01-03 (see ``_backfill_driver``): B's run of it waits at
    its commit, holding the batch, until A's run of it, started meanwhile, has returned or raised. A must
    not fail the batch because a live run holds it.
    """
    batches = write_days(warehouse, 6, seed=5)
    p, url, coord = make_pipeline(), f"{warehouse}/t", str(tmp_path / "coord")
    os.mkdir(coord)
    addr = client.scheduler.address
    a = spawn("tests.faults._backfill_driver", "A", warehouse, day(1), day(4), addr, coord)
    wait_for(lambda: os.path.exists(os.path.join(coord, "A-running")) or a.poll() is not None,
             "backfill A to record its plan", timeout=DEADLINE)
    b = spawn("tests.faults._backfill_driver", "B", warehouse, day(3), day(6), addr, coord)
    results = {}
    for name, proc in (("A", a), ("B", b)):
        code, out, err = finish(proc)
        assert code == 0, f"backfill {name} raised:\n{err[-3000:]}"
        results[name] = json.loads(out.strip().splitlines()[-1])
        assert results[name]["ok"], f"backfill {name} failed batches: {results[name]['errors']}"
    assert (results["A"]["results"][day(3)], results["B"]["results"][day(3)]) == ("skipped", "committed")
    both = sorted(r["results"].get(day(4), "not run") for r in results.values())
    assert both in (["committed", "skipped"], ["committed", "not run"]), results
    assert_sound(url, oracle(batches))
    assert_each_once(url, [day(i) for i in range(1, 7)])
    assert {s.state for s in Ledger(warehouse).batches(p.name)} == {"succeeded"}
    report = verify_report(warehouse, p)
    assert report.ok, [f.message for f in report.findings]


def test_backfill_plans_while_another_driver_starts_one_of_its_batches(client, warehouse, monkeypatch):
    """Between reading the ledger and recording its plan, another driver starts batch 01-02 (5 s lease).

    The backfill must neither crash nor steal the live batch; once that lease has run out with nothing
    committed, the same backfill command commits it.
    """
    batches = write_days(warehouse, 3, seed=6)
    p, url = make_pipeline(), f"{warehouse}/t"
    real_plan, ledger = backfill_module.plan_backfill, Ledger(warehouse)

    def plan_then_race(*args, **kw):
        planned = real_plan(*args, **kw)
        if not ledger.history(p.name):  # only the first backfill meets the other driver
            ledger.record(Event.started(p.name, day(2), "r20260101T000000-0dead000",
                                        lease_until=datetime.now(timezone.utc) + timedelta(seconds=5)))
        return planned

    monkeypatch.setattr(backfill_module, "plan_backfill", plan_then_race)
    r = backfill(p, day(1), day(3), warehouse=warehouse, client=client)
    assert r.ok, r.errors
    assert commits_by_batch(url) == Counter({day(1): 1, day(3): 1})
    assert day(2) not in r.results  # not stolen from the live driver
    wait_for(lambda: ledger.state(p.name, day(2)).is_stale(datetime.now(timezone.utc)),
             "the other driver's lease to run out", timeout=30)
    again = backfill(p, day(1), day(3), warehouse=warehouse, client=client)
    assert again.ok and list(again.results) == [day(2)] and again.results[day(2)].status == "committed"
    assert_sound(url, oracle(batches))
    assert_each_once(url, [day(i) for i in (1, 2, 3)])
