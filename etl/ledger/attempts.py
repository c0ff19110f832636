"""Reading the ledger's event log: current states and the attempts of each batch. Pure.

The log holds one :class:`~etl.ledger.states.BatchState` per accepted event.
:func:`current_states` keeps the latest per batch; :func:`attempts` folds the
log into one :class:`Attempt` per run of a batch, telling a run that is still
going from one whose driver died (``stale``: still ``running`` after its lease)
or one that another run replaced (``abandoned``).

Examples
--------
>>> from datetime import datetime, timedelta, timezone
>>> from etl.ledger.states import Event, transition
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> s1 = transition(None, Event.started("p", "2026-01-01", "r1", lease_until=t + timedelta(hours=1), at=t))
>>> [(a.run_id, a.status) for a in attempts([s1], now=t + timedelta(hours=2))]
[('r1', 'stale')]
>>> s2 = transition(s1, Event.failed("p", "2026-01-01", "r1", error=ValueError("bad"), at=t))
>>> [(a.run_id, a.status, a.error_class) for a in attempts([s1, s2], now=t)]
[('r1', 'failed', 'ValueError')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Mapping

from etl.ledger.states import (FAILED, HEARTBEAT, PLANNED, RUNNING, STARTED, SUCCEEDED, BatchState,
                               is_stale)

ATTEMPT_STATUSES = ("running", "stale", "abandoned", SUCCEEDED, FAILED)


@dataclass(frozen=True)
class Attempt:
    """One run of one batch, from its ``started`` event to its outcome.

    ``status`` is ``succeeded`` or ``failed`` (ended), ``running`` (lease
    live), ``stale`` (still running after its lease: the driver is presumed
    dead) or ``abandoned`` (never ended, and a later attempt replaced it).
    """

    pipeline: str
    batch: str
    run_id: str
    attempt: int
    status: str
    started_at: datetime
    ended_at: datetime | None = None
    lease_until: datetime | None = None
    app_id: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    rows: Mapping[str, int] = field(default_factory=dict)
    version: int | None = None
    fingerprint: str | None = None
    backfill_id: str | None = None


_RANK = {PLANNED: 0, STARTED: 1, HEARTBEAT: 2, SUCCEEDED: 3, FAILED: 3}


def order_key(s: BatchState) -> tuple:
    """The log order: by time; at equal times by attempt, then start before heartbeat before outcome."""
    return (s.updated_at, s.attempt, _RANK.get(s.event, 9), s.run_id)


def current_states(history: Iterable[BatchState]) -> dict[tuple[str, str], BatchState]:
    """The latest state of every ``(pipeline, batch)`` in ``history``."""
    latest: dict[tuple[str, str], BatchState] = {}
    for s in history:
        key = (s.pipeline, s.batch)
        if key not in latest or order_key(s) >= order_key(latest[key]):
            latest[key] = s
    return latest


def attempts(history: Iterable[BatchState], now: datetime) -> list[Attempt]:
    """Every attempt in ``history`` (any order), oldest first.

    Parameters
    ----------
    history : iterable of BatchState
        Ledger rows, as :meth:`etl.ledger.Ledger.history` returns them.
    now : datetime
        The time against which leases are judged.
    """
    rows = sorted(history, key=order_key)
    found: dict[tuple, Attempt] = {}
    last_start: dict[tuple[str, str], tuple] = {}
    for s in rows:
        key = (s.pipeline, s.batch, s.run_id, s.attempt)
        if s.event == STARTED:
            found[key] = Attempt(s.pipeline, s.batch, s.run_id, s.attempt, RUNNING, s.started_at or s.updated_at,
                                 lease_until=s.lease_until, app_id=s.app_id, backfill_id=s.backfill_id)
            last_start[(s.pipeline, s.batch)] = key
        elif key in found and s.state in (RUNNING, SUCCEEDED, FAILED):
            found[key] = _updated(found[key], s)
    return [_judged(a, last_start[(a.pipeline, a.batch)] == (a.pipeline, a.batch, a.run_id, a.attempt), now)
            for a in sorted(found.values(), key=lambda a: (a.started_at, a.pipeline, a.batch, a.attempt))]


def _updated(a: Attempt, s: BatchState) -> Attempt:
    if s.state == RUNNING:
        return Attempt(**{**a.__dict__, "lease_until": s.lease_until})
    return Attempt(**{**a.__dict__, "status": s.state, "ended_at": s.ended_at, "lease_until": None,
                      "app_id": s.app_id, "error_class": s.error_class, "error_message": s.error_message,
                      "rows": dict(s.rows), "version": s.version, "fingerprint": s.fingerprint})


def _judged(a: Attempt, latest: bool, now: datetime) -> Attempt:
    if a.status != RUNNING:
        return a
    if not latest:
        return Attempt(**{**a.__dict__, "status": "abandoned"})
    probe = BatchState(a.pipeline, a.batch, RUNNING, STARTED, a.started_at, lease_until=a.lease_until)
    return Attempt(**{**a.__dict__, "status": "stale"}) if is_stale(probe, now) else a
