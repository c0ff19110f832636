"""The ledger's state machine: examples of each rule, and random event sequences against a tiny model."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.errors import ConfigError, EtlError
from etl.ledger import BatchState, Event, TransitionError, is_stale, transition

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def start(run="r1", at=T0, lease=HOUR, **kw):
    return Event.started("p", "2026-01-01", run, at=at, lease_until=at + lease, **kw)


def test_happy_path_records_one_attempt_with_its_outcome():
    s = transition(None, Event.planned("p", "2026-01-01", at=T0, backfill_id="bf1"))
    assert (s.state, s.attempt, s.backfill_id) == ("pending", 0, "bf1")
    s = transition(s, start(app_id="etl:p:x"))
    assert (s.state, s.attempt, s.run_id, s.started_at, s.ended_at) == ("running", 1, "r1", T0, None)
    end = T0 + timedelta(minutes=5)
    s = transition(s, Event.succeeded("p", "2026-01-01", "r1", rows={"inserted": 7}, version=3,
                                      fingerprint="00000000000000ff", at=end))
    assert (s.state, s.attempt, s.ended_at, s.version, dict(s.rows), s.lease_until) == \
        ("succeeded", 1, end, 3, {"inserted": 7}, None)
    assert s.app_id == "etl:p:x" and s.backfill_id == "bf1"


def test_failure_records_error_class_and_message_and_retry_counts_attempts():
    s = transition(transition(None, start()), Event.failed("p", "2026-01-01", "r1", error=KeyError("boom"), at=T0))
    assert (s.state, s.error_class, s.error_message) == ("failed", "KeyError", "'boom'")
    s = transition(s, start(run="r2", at=T0 + HOUR))
    assert (s.state, s.attempt, s.run_id, s.error_class) == ("running", 2, "r2", None)


@pytest.mark.parametrize("kind", ["heartbeat", "succeeded", "failed"])
def test_outcomes_and_heartbeats_need_a_running_batch(kind):
    with pytest.raises(TransitionError, match=f"event '{kind}' is not allowed in state None") as info:
        transition(None, Event(kind, "p", "2026-01-01", "r1", at=T0))
    assert (info.value.state, info.value.event, info.value.superseded) == (None, kind, False)


def test_a_live_run_cannot_be_started_or_planned_by_another():
    s = transition(None, start())
    for event in (start(run="r2", at=T0 + timedelta(minutes=10)),
                  Event.planned("p", "2026-01-01", at=T0 + timedelta(minutes=10))):
        with pytest.raises(TransitionError, match="run 'r1' holds the batch"):
            transition(s, event)


def test_a_stale_run_can_be_taken_over_and_its_late_outcome_is_refused():
    s = transition(None, start())
    assert not is_stale(s, T0 + HOUR - timedelta(microseconds=1)) and is_stale(s, T0 + HOUR)
    s2 = transition(s, start(run="r2", at=T0 + HOUR))
    assert (s2.run_id, s2.attempt) == ("r2", 2)
    with pytest.raises(TransitionError, match="took the batch over") as info:
        transition(s2, Event.succeeded("p", "2026-01-01", "r1", at=T0 + 2 * HOUR))
    assert info.value.superseded is True


def test_takeover_flag_starts_over_a_live_lease():
    s = transition(None, start())
    s2 = transition(s, start(run="r2", at=T0 + timedelta(minutes=1), takeover=True))
    assert (s2.run_id, s2.attempt) == ("r2", 2)


def test_heartbeat_extends_the_lease_only_for_the_holder():
    s = transition(None, start())
    s = transition(s, Event.heartbeat("p", "2026-01-01", "r1", at=T0 + timedelta(minutes=50),
                                      lease_until=T0 + 2 * HOUR))
    assert not is_stale(s, T0 + HOUR + timedelta(minutes=30))
    with pytest.raises(TransitionError, match="took the batch over"):
        transition(s, Event.heartbeat("p", "2026-01-01", "r9", at=T0 + HOUR, lease_until=T0 + 3 * HOUR))


def test_a_backfill_id_carries_from_its_plan_to_its_run_only():
    planned = transition(None, Event.planned("p", "2026-01-01", at=T0, backfill_id="bf1"))
    running = transition(planned, start())
    assert running.backfill_id == "bf1"
    done = transition(running, Event.failed("p", "2026-01-01", "r1", at=T0))
    assert done.backfill_id == "bf1"
    assert transition(done, start(run="r2")).backfill_id is None  # a later plain run is not part of it


def test_long_error_messages_are_cut():
    assert len(Event.failed("p", "b", "r", error=ValueError("x" * 10_000)).error_message) == 4000


def test_events_are_validated():
    with pytest.raises(ConfigError, match="needs the run_id"):
        Event.started("p", "b", "")
    with pytest.raises(ConfigError, match="no timezone"):
        Event.started("p", "b", "r", at=datetime(2026, 1, 1))
    with pytest.raises(ConfigError, match="unknown ledger event"):
        Event("exploded", "p", "b", "r")
    with pytest.raises(ConfigError, match="has no time"):
        transition(None, Event.started("p", "b", "r"))
    with pytest.raises(ConfigError, match="applied to the state of"):
        transition(transition(None, start()), Event.failed("p", "other", "r1", at=T0))


def test_transition_error_is_an_etl_error_that_pickles():
    with pytest.raises(TransitionError) as info:
        transition(None, Event.succeeded("p", "b", "r", at=T0))
    again = pickle.loads(pickle.dumps(info.value))
    assert isinstance(again, EtlError) and (again.batch, again.event) == ("b", "succeeded")
    assert str(again) == str(info.value)


# ------------------------------------------------------------ random sequences against a model

class Model:
    """What the ledger should do, written as plainly as possible."""

    def __init__(self):
        self.state, self.attempt, self.holder, self.lease = None, 0, None, None

    def apply(self, kind, run, minute, takeover, lease_minutes) -> bool:
        live = self.state == "running" and minute < self.lease
        if kind in ("planned", "started"):
            if self.state == "running" and live and not takeover and run != self.holder:
                return False
            if kind == "planned":
                self.state = "pending"
            else:
                self.state, self.attempt, self.holder = "running", self.attempt + 1, run
                self.lease = minute + lease_minutes
            return True
        if self.state != "running" or run != self.holder:
            return False
        if kind == "heartbeat":
            self.lease = minute + lease_minutes
        else:
            self.state = kind
        return True


steps = st.lists(st.tuples(st.sampled_from(["planned", "started", "heartbeat", "succeeded", "failed"]),
                           st.sampled_from(["r1", "r2", "r3"]), st.integers(0, 90), st.booleans(),
                           st.integers(1, 120)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_random_event_sequences_match_the_model(seq):
    model, state, minute = Model(), None, 0
    for kind, run, gap, takeover, lease in seq:
        minute += gap
        at = T0 + timedelta(minutes=minute)
        event = Event(kind, "p", "2026-01-01", "" if kind == "planned" else run, at=at,
                      lease_until=at + timedelta(minutes=lease) if kind in ("started", "heartbeat") else None,
                      takeover=takeover and kind != "heartbeat")
        accepted = model.apply(kind, run if kind != "planned" else "", minute, takeover and kind != "heartbeat",
                               lease)
        try:
            new = transition(state, event)
        except TransitionError:
            assert not accepted, (kind, run, state)
            continue
        assert accepted, (kind, run, state)
        assert (new.state, new.attempt) == (model.state, model.attempt)
        if new.state == "running":
            assert new.run_id == model.holder and new.lease_until == T0 + timedelta(minutes=model.lease)
        assert new.updated_at == at and new.event == kind
        assert (new.ended_at is not None) == (new.state in ("succeeded", "failed"))
        state = new
