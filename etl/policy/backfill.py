"""Planning a backfill: split a date range into batches and decide which to run. Pure.

Dates follow the sources' daily partitioning. Batches of ``batch_size`` days
are cut from ``start`` on; the last may be shorter. A one-day batch's id is
its date (the same id ``etl run --date`` uses); a longer one is ``first..last``.

What the ledger says decides each batch, date by date (a date's state is that
of the most recently updated ledger batch covering it, so the decision holds
even if earlier backfills cut the range differently):

===========================  ==========  ============  ==========
date's state                 ``none``    ``failed``    ``all``
===========================  ==========  ============  ==========
never seen                   run         run           run
pending (planned, not run)   run         run           run
running, lease ended         run         run           run
running, lease live          skip        skip          skip
failed                       skip        run           run
succeeded                    skip        skip          run
===========================  ==========  ============  ==========

A batch runs if any of its dates must run, except that a live run on any of
its dates skips it (the other driver is still at work; rerun after its lease).

Examples
--------
>>> [b.id for b in plan_backfill("2026-01-01", "2026-01-07", batch_size="3d")]
['2026-01-01..2026-01-03', '2026-01-04..2026-01-06', '2026-01-07']
>>> from datetime import datetime, timezone
>>> from etl.ledger import BatchState
>>> t = datetime(2026, 2, 1, tzinfo=timezone.utc)
>>> done = BatchState("p", "2026-01-02", "succeeded", "succeeded", t)
>>> [(b.id, b.action) for b in plan_backfill("2026-01-01", "2026-01-03", ledger_state=[done], now=t)]
[('2026-01-01', 'run'), ('2026-01-02', 'skip'), ('2026-01-03', 'run')]
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from etl.errors import ConfigError
from etl.ledger.states import FAILED, PENDING, RUNNING, SUCCEEDED, BatchState, is_stale

REPROCESS = ("none", "failed", "all")
RUN, SKIP = "run", "skip"
_SIZE = re.compile(r"^\s*(\d+)\s*([dw])\s*$")


@dataclass(frozen=True)
class Batch:
    """One batch of a backfill: its dates, and whether to run it.

    Attributes
    ----------
    id : str
        ``YYYY-MM-DD`` for one day, ``first..last`` for several.
    dates : tuple of str
        The batch's dates, in order, consecutive.
    action : {"run", "skip"}
    reason : str
        Why, in words, for ``etl backfill --dry-run``.
    """

    id: str
    dates: tuple
    action: str = RUN
    reason: str = "not in the ledger"

    @property
    def runs(self) -> bool:
        return self.action == RUN


def parse_batch_size(size: int | str) -> int:
    """Days per batch from ``7``, ``"7d"`` or ``"1w"``.

    Examples
    --------
    >>> parse_batch_size("1d"), parse_batch_size(3), parse_batch_size("2w")
    (1, 3, 14)
    """
    if isinstance(size, bool):
        size = str(size)
    if isinstance(size, int):
        days = size
    else:
        m = _SIZE.match(str(size))
        if not m:
            raise ConfigError(f"batch size {size!r} is not understood: expected a number of days such as 3, '3d' "
                              "or '1w'.", value=str(size))
        days = int(m.group(1)) * (7 if m.group(2) == "w" else 1)
    if days < 1:
        raise ConfigError(f"batch size {size!r} must be at least one day.", value=str(size))
    return days


def batch_id(dates: tuple | list) -> str:
    """The id of the batch holding ``dates`` (consecutive, in order)."""
    return dates[0] if len(dates) == 1 else f"{dates[0]}..{dates[-1]}"


def batch_dates(batch: str) -> tuple:
    """The dates a batch id covers; ``()`` for ids that are not dates (``all``).

    Examples
    --------
    >>> batch_dates("2026-01-30..2026-02-01")
    ('2026-01-30', '2026-01-31', '2026-02-01')
    >>> batch_dates("all")
    ()
    """
    first, _, last = batch.partition("..")
    try:
        lo = dt.date.fromisoformat(first)
        hi = dt.date.fromisoformat(last) if last else lo
    except ValueError:
        return ()
    return tuple((lo + dt.timedelta(days=i)).isoformat() for i in range((hi - lo).days + 1))


def split_range(start: str | dt.date, end: str | dt.date, batch_size: int | str = "1d") -> list[tuple]:
    """The dates from ``start`` to ``end`` (both included) in consecutive groups of ``batch_size`` days."""
    lo, hi, days = _date(start, "start"), _date(end, "end"), parse_batch_size(batch_size)
    if hi < lo:
        raise ConfigError(f"backfill range is empty: end {hi} is before start {lo}. Swap them.")
    dates = [(lo + dt.timedelta(days=i)).isoformat() for i in range((hi - lo).days + 1)]
    return [tuple(dates[i:i + days]) for i in range(0, len(dates), days)]


def plan_backfill(start: str | dt.date, end: str | dt.date, batch_size: int | str = "1d",
                  reprocess: str = "none", ledger_state: Iterable[BatchState] | Mapping = (), *,
                  now: dt.datetime | None = None) -> list[Batch]:
    """Split ``start..end`` (inclusive) into batches and decide which to run; see the module docstring.

    Parameters
    ----------
    start, end : str or date
        First and last date, ``YYYY-MM-DD``; both included.
    batch_size : int or str
        Days per batch: ``3``, ``"3d"`` or ``"1w"``. Default ``"1d"``.
    reprocess : {"none", "failed", "all"}
        What to redo besides dates never run, pending or stale: ``failed``
        also redoes failed dates, ``all`` everything not running elsewhere.
    ledger_state : iterable or mapping of BatchState
        The pipeline's current batch states (:meth:`etl.ledger.Ledger.batches`).
    now : datetime, optional
        The time leases are judged against; default the current UTC time.

    Returns
    -------
    list of Batch
        In date order, covering every date of the range exactly once.
    """
    if reprocess not in REPROCESS:
        raise ConfigError(f"reprocess={reprocess!r} is not one of {REPROCESS}.", value=reprocess)
    now = now or dt.datetime.now(dt.timezone.utc)
    states = list(ledger_state.values()) if isinstance(ledger_state, Mapping) else list(ledger_state)
    by_date = date_states(states)
    return [_decide(dates, [by_date.get(d) for d in dates], reprocess, now)
            for dates in split_range(start, end, batch_size)]


def date_states(states: Iterable[BatchState]) -> dict[str, BatchState]:
    """Each date's state: that of the most recently updated batch covering it."""
    out: dict[str, BatchState] = {}
    for s in sorted(states, key=lambda s: (s.updated_at, s.batch)):
        for d in batch_dates(s.batch):
            out[d] = s
    return out


def _decide(dates: tuple, states: list, reprocess: str, now: dt.datetime) -> Batch:
    bid = batch_id(dates)
    live = [s for s in states if s is not None and s.state == RUNNING and not is_stale(s, now)]
    if live:
        s = live[0]
        return Batch(bid, dates, SKIP, f"running in run {s.run_id} (batch {s.batch}) until "
                                       f"{s.lease_until.isoformat() if s.lease_until else '?'}; rerun after that")
    kinds = [_kind(s) for s in states]
    redo = {"new", PENDING, "stale"} | ({FAILED} if reprocess in ("failed", "all") else set()) \
        | ({SUCCEEDED} if reprocess == "all" else set())
    summary = ", ".join(f"{kinds.count(k)} {k}" for k in ("new", PENDING, "stale", FAILED, SUCCEEDED)
                        if kinds.count(k))
    if any(k in redo for k in kinds):
        return Batch(bid, dates, RUN, f"{summary} (reprocess={reprocess})")
    hint = " (use reprocess='failed' to redo failures)" if FAILED in kinds else ""
    return Batch(bid, dates, SKIP, f"{summary}{hint}")


def _kind(s: BatchState | None) -> str:
    if s is None:
        return "new"
    if s.state == RUNNING:
        return "stale"  # live ones were handled before
    return s.state


def _date(value: str | dt.date, what: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"backfill {what} {value!r} is not a date: expected YYYY-MM-DD.", value=str(value)) from None
