"""The backfill planner: batches cover the range exactly once, in order; the ledger decides what runs."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.errors import ConfigError
from etl.ledger import BatchState
from etl.policy.backfill import batch_dates, batch_id, parse_batch_size, plan_backfill, split_range

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)
days = st.dates(min_value=dt.date(1999, 1, 1), max_value=dt.date(2030, 12, 31))


@settings(max_examples=200, deadline=None)
@given(days, st.integers(0, 400), st.integers(1, 40))
def test_batches_cover_the_range_exactly_once_in_order(start, span, size):
    end = start + dt.timedelta(days=span)
    batches = plan_backfill(start, end, batch_size=size, now=NOW)
    flat = [d for b in batches for d in b.dates]
    expected = [(start + dt.timedelta(days=i)).isoformat() for i in range(span + 1)]
    assert flat == expected  # exact cover, no overlap, in order
    assert all(len(b.dates) == size for b in batches[:-1]) and 1 <= len(batches[-1].dates) <= size
    assert all(batch_dates(b.id) == b.dates and b.id == batch_id(b.dates) for b in batches)
    assert all(b.action == "run" and b.reason.startswith(f"{len(b.dates)} new") for b in batches)


def test_batch_ids_match_single_day_runs_and_ranges():
    assert [b.id for b in plan_backfill("2026-01-30", "2026-02-02", "2d", now=NOW)] == \
        ["2026-01-30..2026-01-31", "2026-02-01..2026-02-02"]
    assert [b.id for b in plan_backfill("2026-01-01", "2026-01-01", now=NOW)] == ["2026-01-01"]
    assert split_range(dt.date(2026, 1, 1), "2026-01-15", "1w") == [
        tuple(f"2026-01-{d:02d}" for d in range(1, 8)), tuple(f"2026-01-{d:02d}" for d in range(8, 15)),
        ("2026-01-15",)]


@pytest.mark.parametrize("size, days", [(1, 1), ("1d", 1), (" 10d ", 10), ("2w", 14), (7, 7)])
def test_batch_sizes(size, days):
    assert parse_batch_size(size) == days


@pytest.mark.parametrize("call, message", [
    (lambda: plan_backfill("2026-01-02", "2026-01-01"), "end 2026-01-01 is before start"),
    (lambda: plan_backfill("2026-01-01", "2026-01-02", batch_size="0d"), "at least one day"),
    (lambda: plan_backfill("2026-01-01", "2026-01-02", batch_size="1 month"), "not understood"),
    (lambda: plan_backfill("2026-01-01", "2026-01-02", batch_size=True), "not understood"),
    (lambda: plan_backfill("2026-01-01", "2026-01-02", reprocess="some"), "reprocess='some'"),
    (lambda: plan_backfill("01/02/2026", "2026-01-02"), "start '01/02/2026' is not a date"),
])
def test_bad_arguments_are_config_errors(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


# ------------------------------------------------------------ skip rules against the table in the docstring

KINDS = ["new", "pending", "running_live", "running_stale", "failed", "succeeded"]
RULES = {  # kind -> reprocess modes that run it
    "new": {"none", "failed", "all"}, "pending": {"none", "failed", "all"},
    "running_stale": {"none", "failed", "all"}, "running_live": set(),
    "failed": {"failed", "all"}, "succeeded": {"all"},
}


def state_for(day: str, kind: str, updated: dt.datetime = NOW - HOUR) -> BatchState | None:
    if kind == "new":
        return None
    if kind.startswith("running"):
        lease = NOW + HOUR if kind == "running_live" else NOW
        return BatchState("p", day, "running", "started", updated, attempt=1, run_id="r-other", lease_until=lease)
    return BatchState("p", day, kind, kind, updated, attempt=1 if kind != "pending" else 0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(KINDS), min_size=1, max_size=30), st.integers(1, 7),
       st.sampled_from(["none", "failed", "all"]))
def test_skip_rules_follow_the_documented_table(kinds, size, reprocess):
    start = dt.date(2026, 1, 1)
    day = [(start + dt.timedelta(days=i)).isoformat() for i in range(len(kinds))]
    states = [s for d, k in zip(day, kinds) if (s := state_for(d, k)) is not None]
    batches = plan_backfill(day[0], day[-1], size, reprocess, {s.batch: s for s in states}, now=NOW)
    kind_of = dict(zip(day, kinds))
    for b in batches:
        ks = [kind_of[d] for d in b.dates]
        expect = "skip" if "running_live" in ks else ("run" if any(reprocess in RULES[k] for k in ks) else "skip")
        assert b.action == expect, (b, ks)
        if "running_live" in ks:
            assert "running in run r-other" in b.reason


def test_the_latest_ledger_entry_decides_even_when_earlier_batches_were_cut_differently():
    old = BatchState("p", "2026-01-01..2026-01-04", "succeeded", "succeeded", NOW - 3 * HOUR)
    newer = BatchState("p", "2026-01-03", "failed", "failed", NOW - HOUR)
    plan = plan_backfill("2026-01-01", "2026-01-04", "2d", "failed", [newer, old], now=NOW)
    assert [(b.id, b.action) for b in plan] == [("2026-01-01..2026-01-02", "skip"),
                                                 ("2026-01-03..2026-01-04", "run")]
    assert plan[1].reason == "1 failed, 1 succeeded (reprocess=failed)"
    plan = plan_backfill("2026-01-01", "2026-01-04", "2d", "none", [newer, old], now=NOW)
    assert [b.action for b in plan] == ["skip", "skip"] and "use reprocess='failed'" in plan[1].reason


def test_non_date_batches_in_the_ledger_are_ignored():
    everything = BatchState("p", "all", "succeeded", "succeeded", NOW)
    assert [b.action for b in plan_backfill("2026-01-01", "2026-01-02", ledger_state=[everything], now=NOW)] == \
        ["run", "run"]
    assert batch_dates("all") == () and batch_dates("2026-02-30") == ()
