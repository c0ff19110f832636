"""The run ledger's store: an append-only Delta table of batch events in the warehouse.

Every accepted event is one row (the batch's full state after it) in
``<warehouse>/_etl_ledger``, partitioned by pipeline. Each :meth:`Ledger.record`
is one Delta append commit, so an event is either wholly in the log or not at
all, whatever process dies when; concurrent appends from several drivers never
conflict (delta-rs retries the version race). The current state of a batch is
its latest row. Works wherever deltalake does: local disk, S3, GCS, Azure.

Before appending, :meth:`Ledger.record` checks the event against the batch's
current state with :func:`~etl.ledger.states.transition`. Two drivers racing
on one batch may both pass that check; both rows land and the later one is the
state. The table's own app transaction keeps the data commit exactly-once
whatever the ledger says.

Examples
--------
>>> import tempfile
>>> ledger = Ledger(tempfile.mkdtemp())
>>> _ = ledger.record(Event.started("sales", "2026-01-01", "r1", app_id="etl:sales:2026-01-01:ab"))
>>> done = ledger.record(Event.succeeded("sales", "2026-01-01", "r1", rows={"inserted": 10}, version=1))
>>> [(b.batch, b.state, b.attempt, b.version) for b in Ledger(ledger.warehouse).batches("sales")]
[('2026-01-01', 'succeeded', 1, 1)]
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Mapping

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from etl.errors import CommitError, ConfigError
from etl.io.storage import Location
from etl.ledger.attempts import Attempt, attempts, current_states, order_key
from etl.ledger.states import HEARTBEAT, STARTED, BatchState, Event, transition

LEDGER_DIR = "_etl_ledger"
DEFAULT_LEASE = timedelta(hours=1)
_TS = pa.timestamp("us", tz="UTC")
LEDGER_SCHEMA = pa.schema([
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("pipeline", pa.string(), nullable=False),
    pa.field("batch", pa.string(), nullable=False),
    pa.field("state", pa.string(), nullable=False),
    pa.field("event", pa.string(), nullable=False),
    pa.field("updated_at", _TS, nullable=False),
    pa.field("attempt", pa.int32(), nullable=False),
    pa.field("run_id", pa.string()),
    pa.field("app_id", pa.string()),
    pa.field("started_at", _TS),
    pa.field("ended_at", _TS),
    pa.field("lease_until", _TS),
    pa.field("error_class", pa.string()),
    pa.field("error_message", pa.string()),
    pa.field("rows", pa.string()),
    pa.field("version", pa.int64()),
    pa.field("fingerprint", pa.string()),
    pa.field("backfill_id", pa.string()),
    pa.field("owner", pa.string()),
])
_STATE_FIELDS = [f for f in LEDGER_SCHEMA.names if f not in ("event_id", "owner")]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Ledger:
    """The durable record of every run and batch of the pipelines of one warehouse.

    Parameters
    ----------
    warehouse : str
        Warehouse root URL or path; the ledger lives in ``<warehouse>/_etl_ledger``.
    storage_options : mapping, optional
        Store options (endpoint, region ...); never logged or recorded.
    lease : timedelta
        How long a ``started`` or ``heartbeat`` event holds a batch when the
        event sets no ``lease_until`` itself. Default one hour.
    clock : callable, optional
        Returns the current aware UTC datetime; for tests.
    owner : str, optional
        Recorded with every event; default ``host:pid``.
    """

    def __init__(self, warehouse: str, storage_options: Mapping | None = None, *,
                 lease: timedelta = DEFAULT_LEASE, clock: Callable[[], datetime] = utc_now,
                 owner: str | None = None) -> None:
        if lease <= timedelta(0):
            raise ConfigError(f"ledger lease must be positive, found {lease}.")
        self.warehouse = warehouse
        self.location = Location(warehouse, storage_options).join(LEDGER_DIR)
        self.lease, self.clock = lease, clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"

    def __repr__(self) -> str:
        return f"<Ledger {self.location}>"

    # ------------------------------------------------------------ writing

    def record(self, event: Event) -> BatchState:
        """Check ``event`` against the batch's current state and append it; return the new state.

        ``at`` defaults to now, and is never earlier than the state it follows
        (so the log order survives clock skew between drivers). ``lease_until``
        of ``started``/``heartbeat`` defaults to ``at + lease``.

        Raises
        ------
        TransitionError
            The event is illegal in the batch's current state; nothing is written.
        CommitError
            The store refused the append; nothing is written.
        """
        return self.record_all([event])[0]

    def record_all(self, events: Iterable[Event]) -> list[BatchState]:
        """Several events in ONE atomic append (e.g. a backfill's ``planned`` events).

        Events of the same batch apply in the order given. All are checked
        before anything is written: one illegal event writes none.
        """
        events = list(events)
        if not events:
            return []
        current = self._current({(e.pipeline, e.batch) for e in events})
        new_states = []
        for event in events:
            key = (event.pipeline, event.batch)
            state = transition(current.get(key), self._stamped(event, current.get(key)))
            current[key] = state
            new_states.append(state)
        self._append(new_states)
        return new_states

    def _stamped(self, event: Event, state: BatchState | None) -> Event:
        at = event.at or self.clock()
        if state is not None and at <= state.updated_at:
            at = state.updated_at + timedelta(microseconds=1)
        lease_until = event.lease_until
        if event.kind in (STARTED, HEARTBEAT) and lease_until is None:
            lease_until = at + self.lease
        return replace(event, at=at, lease_until=lease_until)

    def _append(self, states: list[BatchState]) -> None:
        table = _to_arrow(states, self.owner)
        self._ensure()
        props = CommitProperties(custom_metadata={"etl.ledger": "append", "etl.owner": self.owner})
        try:
            write_deltalake(self.location.url, table, mode="append", partition_by=["pipeline"],
                            storage_options=self.location.delta_options, commit_properties=props)
        except (DeltaError, OSError) as exc:
            raise CommitError(f"ledger {self.location}: appending {len(states)} event(s) failed: "
                              f"{type(exc).__name__}: {exc}. Nothing was recorded; the pipeline's table is "
                              "unaffected. Check the store and rerun.", table=str(self.location)) from exc

    def _ensure(self) -> None:
        if self._open() is not None:
            return
        try:
            DeltaTable.create(self.location.url, LEDGER_SCHEMA, mode="ignore", partition_by=["pipeline"],
                              storage_options=self.location.delta_options)
        except CommitFailedError:
            pass  # another driver created it at the same moment

    # ------------------------------------------------------------ reading

    def _open(self) -> DeltaTable | None:
        try:
            return DeltaTable(self.location.url, storage_options=self.location.delta_options)
        except TableNotFoundError:
            return None

    def history(self, pipeline: str | None = None, batch: str | None = None) -> list[BatchState]:
        """Every recorded state, oldest first (one per accepted event)."""
        dt = self._open()
        if dt is None:
            return []
        filters = [(c, "=", v) for c, v in (("pipeline", pipeline), ("batch", batch)) if v is not None]
        table = dt.to_pyarrow_table(filters=filters or None)
        return sorted(_from_arrow(table), key=order_key)

    def _current(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], BatchState]:
        """The current states of the batches in ``keys``; reads one batch's rows when that is all it needs."""
        out: dict[tuple[str, str], BatchState] = {}
        for pipeline in sorted({p for p, _ in keys}):
            batches = [b for p, b in keys if p == pipeline]
            rows = self.history(pipeline, batches[0] if len(batches) == 1 else None)
            out.update(current_states(rows))
        return out

    def state(self, pipeline: str, batch: str) -> BatchState | None:
        """The current state of one batch, or None if the ledger never saw it."""
        return current_states(self.history(pipeline, batch)).get((pipeline, batch))

    def batches(self, pipeline: str) -> list[BatchState]:
        """The current state of every batch of ``pipeline``, by batch id."""
        return sorted(current_states(self.history(pipeline)).values(), key=lambda s: s.batch)

    def runs(self, pipeline: str | None = None, now: datetime | None = None) -> list[Attempt]:
        """Every attempt (one run of one batch), oldest first; see :func:`~etl.ledger.attempts.attempts`."""
        return attempts(self.history(pipeline), now or self.clock())

    def compact(self) -> None:
        """Merge the log's small files and write a checkpoint (safe while others append)."""
        dt = self._open()
        if dt is not None:
            dt.optimize.compact()
            DeltaTable(self.location.url, storage_options=self.location.delta_options).create_checkpoint()


def _to_arrow(states: list[BatchState], owner: str) -> pa.Table:
    rows = []
    for s in states:
        row = {f: getattr(s, f) for f in _STATE_FIELDS}
        row.update(rows=json.dumps(dict(s.rows), sort_keys=True), event_id=uuid.uuid4().hex, owner=owner)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)


def _from_arrow(table: pa.Table) -> list[BatchState]:
    seen, out = set(), []
    for row in table.to_pylist():
        if row["event_id"] in seen:  # a retried append that had landed after all
            continue
        seen.add(row["event_id"])
        state = {f: row[f] for f in _STATE_FIELDS}
        state["rows"] = json.loads(row["rows"] or "{}")
        out.append(BatchState(**state))
    return out
