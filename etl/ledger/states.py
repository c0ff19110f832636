"""The run ledger's state machine: events in, the batch's next state out. No I/O, no clock.

A batch of a pipeline moves through four states::

    (none) ──planned──▶ pending ──started──▶ running ──succeeded──▶ succeeded
                                               │  ▲  ──failed─────▶ failed
                                               └──┘ heartbeat (extends the lease)

``started`` is also allowed from ``failed`` and ``succeeded`` (a retry, a
reprocess) and from ``none`` (a single run without a plan). A ``running`` batch
holds a lease: until ``lease_until`` no other run may start it (unless the event
says ``takeover``); after it, the batch is *stale* (its driver is presumed dead)
and may be planned or started again. Terminal events and heartbeats are accepted
only from the run that holds the batch, so a run that was taken over cannot
overwrite the state of the run that replaced it.

Every accepted event yields a complete :class:`BatchState`, which the store
writes as one row: the current state of a batch is simply its latest row.

Examples
--------
>>> from datetime import datetime, timedelta, timezone
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> s = transition(None, Event.planned("sales", "2026-01-01", at=t))
>>> s = transition(s, Event.started("sales", "2026-01-01", "r1", lease_until=t + timedelta(hours=1), at=t))
>>> s = transition(s, Event.succeeded("sales", "2026-01-01", "r1", rows={"inserted": 3}, version=4, at=t))
>>> s.state, s.attempt, s.version
('succeeded', 1, 4)
>>> try:
...     transition(s, Event.heartbeat("sales", "2026-01-01", "r1", lease_until=t, at=t))
... except TransitionError as exc:
...     print(exc)
batch '2026-01-01' of pipeline 'sales': event 'heartbeat' is not allowed in state 'succeeded' (allowed: planned, started). A heartbeat only extends a running batch; start the batch first.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Mapping

from etl.errors import ConfigError, EtlError

PENDING, RUNNING, SUCCEEDED, FAILED = "pending", "running", "succeeded", "failed"
STATES = (PENDING, RUNNING, SUCCEEDED, FAILED)
PLANNED, STARTED, HEARTBEAT = "planned", "started", "heartbeat"
EVENTS = (PLANNED, STARTED, HEARTBEAT, SUCCEEDED, FAILED)
MAX_MESSAGE = 4000  # characters of an error message kept in the ledger

# event -> the states it may follow (None: no state yet); RUNNING needs the extra rules below.
_ALLOWED: dict[str, tuple] = {
    PLANNED: (None, PENDING, FAILED, SUCCEEDED, RUNNING),
    STARTED: (None, PENDING, FAILED, SUCCEEDED, RUNNING),
    HEARTBEAT: (RUNNING,),
    SUCCEEDED: (RUNNING,),
    FAILED: (RUNNING,),
}
_HINT = {
    HEARTBEAT: "A heartbeat only extends a running batch; start the batch first.",
    SUCCEEDED: "Record 'started' before the outcome of a run.",
    FAILED: "Record 'started' before the outcome of a run.",
}


class TransitionError(EtlError):
    """The ledger refused an event: it is illegal in the batch's current state.

    Attributes ``pipeline``, ``batch``, ``state``, ``event`` and ``superseded``
    (True when another run took the batch over) describe the refusal.
    """


@dataclass(frozen=True)
class Event:
    """Something that happened to one batch of one pipeline.

    Build events with the class methods; ``at`` is filled in by the ledger
    when left None.

    Parameters
    ----------
    kind : {"planned", "started", "heartbeat", "succeeded", "failed"}
    pipeline, batch : str
        The pipeline name and the batch id (a date, ``A..B`` or ``all``).
    run_id : str
        The run making the attempt (not needed for ``planned``).
    at : datetime, optional
        When it happened (timezone-aware, UTC).
    app_id : str, optional
        The Delta app transaction id of the attempt.
    lease_until : datetime, optional
        ``started``/``heartbeat``: until when the run holds the batch.
    takeover : bool
        ``started``/``planned``: allowed even while another run's lease is live.
    error_class, error_message : str, optional
        ``failed``: the exception's class name and message.
    rows : mapping of str to int
        ``succeeded``: row counts (read, inserted, quarantined ...).
    version : int, optional
        ``succeeded``: the committed table version.
    fingerprint : str, optional
        ``succeeded``: the content fingerprint delta of the commit (16 hex digits).
    backfill_id : str, optional
        The backfill this event belongs to, if any.
    """

    kind: str
    pipeline: str
    batch: str
    run_id: str = ""
    at: datetime | None = None
    app_id: str | None = None
    lease_until: datetime | None = None
    takeover: bool = False
    error_class: str | None = None
    error_message: str | None = None
    rows: Mapping[str, int] = field(default_factory=dict)
    version: int | None = None
    fingerprint: str | None = None
    backfill_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENTS:
            raise ConfigError(f"unknown ledger event {self.kind!r}: expected one of {EVENTS}.")
        if not self.pipeline or not self.batch:
            raise ConfigError(f"ledger event {self.kind!r} needs a pipeline and a batch; found "
                              f"pipeline={self.pipeline!r}, batch={self.batch!r}.")
        if self.kind != PLANNED and not self.run_id:
            raise ConfigError(f"ledger event {self.kind!r} of batch {self.batch!r} needs the run_id of the run "
                              "making the attempt.")
        for name in ("at", "lease_until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ConfigError(f"ledger event {self.kind!r}: {name}={value!r} has no timezone; "
                                  "use an aware UTC datetime.")
        object.__setattr__(self, "rows", {str(k): int(v) for k, v in dict(self.rows).items()})

    @classmethod
    def planned(cls, pipeline: str, batch: str, **kw) -> "Event":
        return cls(PLANNED, pipeline, batch, **kw)

    @classmethod
    def started(cls, pipeline: str, batch: str, run_id: str, **kw) -> "Event":
        return cls(STARTED, pipeline, batch, run_id, **kw)

    @classmethod
    def heartbeat(cls, pipeline: str, batch: str, run_id: str, **kw) -> "Event":
        return cls(HEARTBEAT, pipeline, batch, run_id, **kw)

    @classmethod
    def succeeded(cls, pipeline: str, batch: str, run_id: str, **kw) -> "Event":
        return cls(SUCCEEDED, pipeline, batch, run_id, **kw)

    @classmethod
    def failed(cls, pipeline: str, batch: str, run_id: str, error: BaseException | None = None,
               **kw) -> "Event":
        """A failed attempt; ``error`` fills ``error_class`` and ``error_message``."""
        if error is not None:
            kw.setdefault("error_class", type(error).__name__)
            kw.setdefault("error_message", str(error)[:MAX_MESSAGE])
        return cls(FAILED, pipeline, batch, run_id, **kw)


@dataclass(frozen=True)
class BatchState:
    """Where one batch stands after its latest event; one ledger row.

    ``attempt`` counts ``started`` events; ``started_at``/``ended_at`` belong
    to the current attempt (``ended_at`` is None while it runs or when a run
    died without recording its end).
    """

    pipeline: str
    batch: str
    state: str
    event: str
    updated_at: datetime
    attempt: int = 0
    run_id: str = ""
    app_id: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    lease_until: datetime | None = None
    error_class: str | None = None
    error_message: str | None = None
    rows: Mapping[str, int] = field(default_factory=dict)
    version: int | None = None
    fingerprint: str | None = None
    backfill_id: str | None = None

    def is_stale(self, now: datetime) -> bool:
        """True for a running batch whose lease has run out: its driver is presumed dead."""
        return is_stale(self, now)


def is_stale(state: BatchState | None, now: datetime) -> bool:
    """True when ``state`` is ``running`` and its lease ended at or before ``now``.

    A running batch without a lease is stale at once (nothing vouches for it).
    """
    if state is None or state.state != RUNNING:
        return False
    return state.lease_until is None or now >= state.lease_until


def transition(state: BatchState | None, event: Event) -> BatchState:
    """The batch's state after ``event``, or :class:`TransitionError` if the event is illegal.

    Parameters
    ----------
    state : BatchState or None
        The batch's current state (None: the ledger has never seen it).
    event : Event
        With ``at`` set.

    Raises
    ------
    TransitionError
        The event is not allowed now; the message says why and what to do.
    ConfigError
        ``event.at`` is missing, or the event belongs to another batch.
    """
    if event.at is None:
        raise ConfigError(f"ledger event {event.kind!r} of batch {event.batch!r} has no time; set at=.")
    if state is not None and (state.pipeline, state.batch) != (event.pipeline, event.batch):
        raise ConfigError(f"ledger event for {event.pipeline}/{event.batch} applied to the state of "
                          f"{state.pipeline}/{state.batch}.")
    current = state.state if state is not None else None
    if current not in _ALLOWED[event.kind]:
        allowed = ", ".join(e for e in EVENTS if current in _ALLOWED[e])
        raise _refuse(state, event, f"event {event.kind!r} is not allowed in state {current!r} "
                                    f"(allowed: {allowed}). {_HINT.get(event.kind, '')}".rstrip())
    if current == RUNNING:
        _check_running(state, event)
    return _apply(state, event)


def _check_running(state: BatchState, event: Event) -> None:
    same_run = event.run_id == state.run_id
    if event.kind in (PLANNED, STARTED):
        if same_run or event.takeover or is_stale(state, event.at):
            return
        raise _refuse(state, event, f"event {event.kind!r} by run {event.run_id or '(planner)'!r} refused: run "
                                    f"{state.run_id!r} holds the batch (attempt {state.attempt}, lease until "
                                    f"{_iso(state.lease_until)}). Wait for it to finish; if its driver died, "
                                    "retry after the lease ends or take the batch over explicitly.")
    if not same_run:
        raise _refuse(state, event, f"event {event.kind!r} from run {event.run_id!r} refused: run "
                                    f"{state.run_id!r} took the batch over (attempt {state.attempt}). The ledger "
                                    "keeps the newer run's state; the table's history shows whether the older "
                                    "run committed.", superseded=True)


def _apply(state: BatchState | None, e: Event) -> BatchState:
    base = state or BatchState(e.pipeline, e.batch, PENDING, PLANNED, e.at)
    common = dict(event=e.kind, updated_at=e.at, backfill_id=e.backfill_id or base.backfill_id)
    if e.kind == PLANNED:  # waiting again: the last attempt's details stay in its own rows
        return BatchState(e.pipeline, e.batch, PENDING, attempt=base.attempt, **common)
    if e.kind == STARTED:  # a backfill's id carries over from its own plan only
        common["backfill_id"] = e.backfill_id or (base.backfill_id if base.state == PENDING else None)
        return BatchState(e.pipeline, e.batch, RUNNING, attempt=base.attempt + 1, run_id=e.run_id,
                          app_id=e.app_id, started_at=e.at, lease_until=e.lease_until, **common)
    if e.kind == HEARTBEAT:
        return replace(base, lease_until=e.lease_until or base.lease_until, **common)
    outcome = dict(state=e.kind, ended_at=e.at, lease_until=None, app_id=e.app_id or base.app_id, rows=e.rows)
    if e.kind == SUCCEEDED:
        return replace(base, version=e.version, fingerprint=e.fingerprint, **outcome, **common)
    return replace(base, error_class=e.error_class or "Error", error_message=e.error_message or "",
                   **outcome, **common)


def _refuse(state: BatchState | None, event: Event, why: str, superseded: bool = False) -> TransitionError:
    return TransitionError(f"batch {event.batch!r} of pipeline {event.pipeline!r}: {why}",
                           pipeline=event.pipeline, batch=event.batch, event=event.kind,
                           state=state.state if state else None, superseded=superseded)


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "(none)"
