"""The ledger on a real Delta table: durability, atomic writes, crashes, concurrent drivers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from deltalake import DeltaTable

from etl.errors import ConfigError
from etl.ledger import LEDGER_DIR, Event, Ledger, TransitionError
from etl.policy.backfill import plan_backfill

WORKER = str(Path(__file__).with_name("_worker.py"))
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now


def version(wh) -> int:
    return DeltaTable(str(Path(wh) / LEDGER_DIR)).version()


def test_an_event_written_is_visible_to_a_new_ledger_instance(tmp_path):
    clock = Clock()
    first = Ledger(str(tmp_path), clock=clock)
    first.record(Event.started("p", "2026-01-01", "r1", app_id="etl:p:2026-01-01:aa"))
    clock.now += timedelta(minutes=3)
    first.record(Event.succeeded("p", "2026-01-01", "r1", rows={"inserted": 5, "quarantined": 1}, version=7,
                                 fingerprint="00000000000000aa"))
    (state,) = Ledger(str(tmp_path)).batches("p")
    assert (state.state, state.attempt, state.run_id, state.version, dict(state.rows), state.fingerprint) == \
        ("succeeded", 1, "r1", 7, {"inserted": 5, "quarantined": 1}, "00000000000000aa")
    assert (state.started_at, state.ended_at) == (T0, T0 + timedelta(minutes=3))
    (attempt,) = Ledger(str(tmp_path)).runs("p")
    assert (attempt.status, attempt.app_id, attempt.version) == ("succeeded", "etl:p:2026-01-01:aa", 7)
    assert [s.event for s in Ledger(str(tmp_path)).history("p")] == ["started", "succeeded"]


def test_an_illegal_event_writes_nothing(tmp_path):
    ledger = Ledger(str(tmp_path), clock=Clock())
    ledger.record(Event.started("p", "b1", "r1"))
    before = version(tmp_path)
    with pytest.raises(TransitionError, match="run 'r1' holds the batch"):
        ledger.record(Event.started("p", "b1", "r2"))
    assert version(tmp_path) == before and len(ledger.history("p")) == 1


def test_record_all_is_one_atomic_commit_or_nothing(tmp_path):
    ledger = Ledger(str(tmp_path), clock=Clock())
    ledger.record_all([Event.planned("p", f"2026-01-0{d}", backfill_id="bf") for d in range(1, 4)])
    v = version(tmp_path)
    with pytest.raises(TransitionError):
        ledger.record_all([Event.started("p", "2026-01-01", "r1"), Event.succeeded("p", "2026-01-02", "r1")])
    assert version(tmp_path) == v
    states = ledger.record_all([Event.started("p", "2026-01-01", "r1"), Event.succeeded("p", "2026-01-01", "r1")])
    assert [s.state for s in states] == ["running", "succeeded"] and version(tmp_path) == v + 1
    assert [(b.batch, b.state, b.backfill_id) for b in ledger.batches("p")] == \
        [("2026-01-01", "succeeded", "bf"), ("2026-01-02", "pending", "bf"), ("2026-01-03", "pending", "bf")]


def test_log_order_survives_a_clock_that_goes_backwards(tmp_path):
    clock = Clock()
    a = Ledger(str(tmp_path), clock=clock)
    a.record(Event.started("p", "b", "r1"))
    b = Ledger(str(tmp_path), clock=Clock(T0 - timedelta(hours=5)))  # a driver whose clock is behind
    b.record(Event.failed("p", "b", "r1", error=RuntimeError("lost")))
    state = a.state("p", "b")
    assert state.state == "failed" and state.updated_at > T0
    assert [s.event for s in a.history("p")] == ["started", "failed"]


def test_pipelines_are_kept_apart(tmp_path):
    ledger = Ledger(str(tmp_path), clock=Clock())
    ledger.record(Event.started("a", "b", "r1"))
    ledger.record(Event.planned("b", "b"))
    assert [s.pipeline for s in ledger.batches("a")] == ["a"]
    assert {r.pipeline for r in ledger.runs()} == {"a"}
    assert Ledger(str(tmp_path / "empty")).batches("a") == [] and Ledger(str(tmp_path / "x")).runs() == []


def test_a_half_written_run_is_reported_and_redone_after_its_lease(tmp_path):
    clock = Clock()
    Ledger(str(tmp_path), clock=clock, lease=timedelta(minutes=30)).record(Event.started("p", "2026-01-02", "r1"))
    # the driver died here: no outcome was ever recorded
    later = Ledger(str(tmp_path), clock=Clock(T0 + timedelta(minutes=29)))
    assert [a.status for a in later.runs("p")] == ["running"]
    plan = plan_backfill("2026-01-01", "2026-01-03", ledger_state=later.batches("p"), now=later.clock())
    assert [(b.id, b.action) for b in plan] == [("2026-01-01", "run"), ("2026-01-02", "skip"), ("2026-01-03", "run")]
    stale = Ledger(str(tmp_path), clock=Clock(T0 + timedelta(minutes=30)))
    (attempt,) = stale.runs("p")
    assert (attempt.status, attempt.ended_at) == ("stale", None)
    plan = plan_backfill("2026-01-01", "2026-01-03", ledger_state=stale.batches("p"), now=stale.clock())
    assert [b.action for b in plan] == ["run", "run", "run"] and "1 stale" in plan[1].reason
    stale.record(Event.started("p", "2026-01-02", "r2"))
    stale.record(Event.succeeded("p", "2026-01-02", "r2", version=1))
    assert [(a.run_id, a.status) for a in stale.runs("p")] == [("r1", "abandoned"), ("r2", "succeeded")]


def test_a_driver_killed_at_any_moment_leaves_a_readable_writable_ledger(tmp_path):
    with subprocess.Popen([sys.executable, WORKER, "forever", str(tmp_path), "crashy", "0"],
                          stdout=subprocess.PIPE, text=True) as child:
        try:
            seen = [child.stdout.readline() for _ in range(3)]
        finally:
            os.kill(child.pid, signal.SIGKILL)  # mid-append, most likely: it appends without pause
            child.wait()
    assert seen == ["ok 0\n", "ok 1\n", "ok 2\n"]
    after = Ledger(str(tmp_path), clock=Clock(datetime.now(timezone.utc) + timedelta(hours=2)))
    states = after.batches("crashy")
    assert len(states) >= 3 and all(s.state == "running" and s.app_id == f"etl:crashy:{s.batch}" for s in states)
    assert {a.status for a in after.runs("crashy")} == {"stale"}
    plan = plan_backfill("2026-01-01", "2026-01-03", ledger_state=states, now=after.clock())
    assert [b.action for b in plan] == ["run"] * 3
    after.record(Event.started("crashy", "2026-01-01", "rescue"))
    assert after.state("crashy", "2026-01-01").attempt == 2


def test_two_drivers_appending_at_once_both_land(tmp_path):
    Ledger(str(tmp_path))._ensure()
    n = 4
    kids = [subprocess.Popen([sys.executable, WORKER, "append", str(tmp_path), name, str(n)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for name in ("a", "b")]
    try:
        assert [k.stdout.readline() for k in kids] == ["ready\n", "ready\n"]
        for k in kids:
            k.stdin.write("go\n")
            k.stdin.flush()
        assert [k.stdout.readline() for k in kids] == ["done\n", "done\n"]
    finally:
        for k in kids:
            k.stdin.close()
            k.stdout.close()
            k.wait(timeout=120)
    assert [k.returncode for k in kids] == [0, 0]
    ledger = Ledger(str(tmp_path))
    assert sorted((s.batch, s.state, s.rows["inserted"]) for s in ledger.batches("race")) == \
        sorted((f"{name}-{i}", "succeeded", i) for name in "ab" for i in range(n))
    assert len(ledger.history("race")) == 4 * n and version(tmp_path) == 4 * n


def test_compact_keeps_every_event(tmp_path):
    ledger = Ledger(str(tmp_path), clock=Clock())
    for d in range(1, 6):
        ledger.record(Event.started("p", f"2026-01-0{d}", f"r{d}"))
    before = [(s.batch, s.event, s.updated_at) for s in ledger.history("p")]
    ledger.compact()
    assert [(s.batch, s.event, s.updated_at) for s in Ledger(str(tmp_path)).history("p")] == before
    assert len(DeltaTable(str(tmp_path / LEDGER_DIR)).file_uris()) == 1


def test_default_lease_applies_and_must_be_positive(tmp_path):
    ledger = Ledger(str(tmp_path), clock=Clock(), lease=timedelta(minutes=5))
    assert ledger.record(Event.started("p", "b", "r")).lease_until == T0 + timedelta(minutes=5)
    with pytest.raises(ConfigError, match="lease must be positive"):
        Ledger(str(tmp_path), lease=timedelta(0))
