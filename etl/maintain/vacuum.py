"""Vacuum: delete data files no version within the retention references, never a run's in-flight files.

The rule (decided by :func:`decide_retention`, a pure function):

1. The retention is ``--retention-hours``, else the table's
   ``delta.deletedFileRetentionDuration``, else 168 hours.
2. Below :data:`MIN_RETENTION_HOURS` (1 h) it is refused unless ``force``: readers of
   recent versions (time travel, a query in progress) would lose their files.
3. Whatever ``force`` says, it is raised above the age of the oldest live run lease
   plus :data:`LEASE_MARGIN_SECONDS` (clock skew between hosts and the store).
   Every file a run in flight stages, or reads from its snapshot, was written or
   removed after its lease started, so none of them is old enough to go.
4. A ``full`` vacuum also deletes files no commit references, which is what a
   run's staged files are until it commits: it never goes below 1 h, even with
   ``force``, so a run starting during the vacuum (lease not yet visible) keeps its files.
   Without ``full``, vacuum deletes only files that commits removed, never a staged one.

Then, belt and braces, the files the vacuum would delete are listed first (a dry
run) and checked: if one was staged by a run holding a live lease (a clock
far off, a lease renewed), the retention is raised past that file's age; and
if a run took a lease meanwhile, the plan is made again with it. Files under
``_etl/`` and ``_delta_log/`` are never deleted by vacuum.

What ``force`` can still cost: below 1 h, a run that starts in the instant the
vacuum deletes may fail reading a file removed minutes ago (nothing is committed
then; rerun it), and time travel to recent versions breaks.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Mapping

from deltalake.exceptions import CommitFailedError, DeltaError

from etl.commit.files import staged_run_id
from etl.errors import CommitError, ConfigError
from etl.io.storage import Location
from etl.commit.cleanup import live_lease_starts
from etl.maintain.table import commit_properties, new_run_id, open_existing

MIN_RETENTION_HOURS = 1
DEFAULT_RETENTION_HOURS = 168
LEASE_MARGIN_SECONDS = 15 * 60
_INTERVAL = re.compile(r"^\s*interval\s+(\d+)\s+(second|minute|hour|day|week)s?\s*$", re.IGNORECASE)
_UNIT_HOURS = {"second": 1 / 3600, "minute": 1 / 60, "hour": 1, "day": 24, "week": 168}


@dataclass(frozen=True)
class Retention:
    """The retention a vacuum uses, and why it differs from the one asked for."""

    requested: int | None
    hours: int
    reasons: tuple = ()


@dataclass(frozen=True)
class VacuumResult:
    table: str
    run_id: str
    dry_run: bool
    full: bool
    retention: Retention
    files: list = field(default_factory=list)  # deleted, or that would be deleted in a dry run
    kept_for_runs: list = field(default_factory=list)  # live runs whose files the retention protects
    version: int | None = None  # the VACUUM END commit; None in a dry run or with nothing to delete

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        lines = [f"{'would delete' if self.dry_run else 'delete'} {f}" for f in self.files]
        asked = self.retention.requested
        lines += [f"retention {self.retention.hours} h"
                  + (f" (asked {asked} h)" if asked not in (None, self.retention.hours) else "")]
        lines += [f"  {r}" for r in self.retention.reasons]
        lines.append(f"{verb} {len(self.files)} file(s) in {self.table}"
                     + (f", version {self.version}" if self.version is not None else "")
                     + ("" if self.dry_run else f", run {self.run_id}"))
        return "\n".join(lines)


def table_retention_hours(configuration: Mapping[str, str]) -> int:
    """The table's ``delta.deletedFileRetentionDuration`` in whole hours (168 if unset).

    Examples
    --------
    >>> table_retention_hours({"delta.deletedFileRetentionDuration": "interval 2 days"})
    48
    >>> table_retention_hours({})
    168
    """
    value = configuration.get("delta.deletedFileRetentionDuration")
    m = _INTERVAL.match(value or "")
    if not m:
        return DEFAULT_RETENTION_HOURS
    return math.ceil(int(m.group(1)) * _UNIT_HOURS[m.group(2).lower()])


def decide_retention(requested: int | None, *, table_hours: int, lease_starts: Mapping[str, float], now: float,
                     force: bool = False, full: bool = False) -> Retention:
    """The retention in whole hours (delta-rs takes hours) under the rule in this module's docstring.

    Examples
    --------
    >>> r = decide_retention(0, table_hours=168, lease_starts={"r1": 1000.0}, now=1000.0 + 7200, force=True)
    >>> r.hours, r.reasons
    (3, ('raised to 3 h: run r1 holds a live lease since 120 min ago (+15 min margin)',))
    """
    if requested is not None and requested < 0:
        raise ConfigError(f"--retention-hours {requested}: expected 0 or more hours.")
    hours, reasons = (table_hours if requested is None else requested), []
    if hours < MIN_RETENTION_HOURS and not force:
        raise ConfigError(
            f"--retention-hours {hours} is below the {MIN_RETENTION_HOURS} h floor: a reader of a recent version "
            "(time travel, a query in progress) would lose its files. Use a longer retention, or pass "
            "--force-retention if nothing reads old versions (runs in flight stay protected either way).",
            retention_hours=hours)
    if full and hours < MIN_RETENTION_HOURS:
        hours = MIN_RETENTION_HOURS
        reasons.append(f"raised to {hours} h: a full vacuum deletes unreferenced files, and one younger than "
                       f"{MIN_RETENTION_HOURS} h may be staged by a run that is just starting")
    if lease_starts:
        run, started = min(lease_starts.items(), key=lambda kv: kv[1])
        need = math.ceil((max(0.0, now - started) + LEASE_MARGIN_SECONDS) / 3600)
        if hours < need:
            hours = need
            reasons.append(f"raised to {hours} h: run {run} holds a live lease since "
                           f"{(now - started) / 60:.0f} min ago (+{LEASE_MARGIN_SECONDS // 60} min margin)")
    return Retention(requested, int(hours), tuple(reasons))


def vacuum(loc: Location, *, retention_hours: int | None = None, dry_run: bool = False, force: bool = False,
           full: bool = False, run_id: str | None = None, now: float | None = None) -> VacuumResult:
    """Delete the files the retention lets go, as one recorded transaction (``etl.operation = VACUUM``).

    Parameters
    ----------
    loc : Location
        The table.
    retention_hours : int, optional
        Keep files removed (or, with ``full``, unreferenced) less than this many hours ago.
        Default: the table's ``delta.deletedFileRetentionDuration``, else 168.
    dry_run : bool
        List the files, delete nothing, commit nothing.
    force : bool
        Allow a retention below 1 hour (never below what live run leases need).
    full : bool
        Also delete files no commit references (e.g. left by killed runs).
    """
    dt = open_existing(loc)
    now = time.time() if now is None else now
    table_hours = table_retention_hours(dt.metadata().configuration)
    leases = live_lease_starts(loc, now)
    for _ in range(5):
        decision = decide_retention(retention_hours, table_hours=table_hours, lease_starts=leases, now=now,
                                    force=force, full=full)
        files, decision = _plan(dt, loc, decision, leases, full, now)
        started = live_lease_starts(loc, now)  # a run that began while we listed: plan again with it
        if dry_run or set(started) <= set(leases):
            break
        leases = {**leases, **started}
    run_id = run_id or new_run_id()
    result = VacuumResult(str(loc), run_id, dry_run, full, decision, files, sorted(leases))
    if dry_run or not files:
        return result
    props = commit_properties("VACUUM", run_id, {"retention_hours": decision.hours, "requested_hours": retention_hours,
                                                  "full": full, "force": force, "live_runs": sorted(leases)})
    try:
        deleted = dt.vacuum(retention_hours=decision.hours, dry_run=False, enforce_retention_duration=False,
                            full=full, commit_properties=props)
    except (CommitFailedError, DeltaError) as exc:
        raise CommitError(f"vacuum of {loc} failed: {str(exc).rstrip('. ')}. Deleting unreferenced files is safe "
                          "to repeat; run it again.", table=str(loc)) from exc
    return VacuumResult(str(loc), run_id, False, full, decision, sorted(deleted), sorted(leases), dt.version())


def _plan(dt, loc: Location, decision: Retention, leases: Mapping[str, float], full: bool,
          now: float) -> tuple[list[str], Retention]:
    """The files a vacuum with ``decision`` would delete, after raising it past any live run's file."""
    for _ in range(3):
        files = sorted(dt.vacuum(retention_hours=decision.hours, dry_run=True, enforce_retention_duration=False,
                                 full=full))
        live = [f for f in files if staged_run_id(f) in leases]
        if not live:
            return files, decision
        oldest = max(now - _mtime(loc, f) for f in live)
        hours = max(decision.hours + 1, math.ceil((oldest + LEASE_MARGIN_SECONDS) / 3600))
        decision = Retention(decision.requested, hours, decision.reasons + (
            f"raised to {hours} h: {len(live)} file(s) staged by live run(s) "
            f"{', '.join(sorted({staged_run_id(f) for f in live}))} looked older than their lease",))
    raise CommitError(f"vacuum of {loc} refused: files staged by runs in flight kept appearing among the files "
                      "to delete. Run it again once those runs are done.", table=str(loc))


def _mtime(loc: Location, rel: str) -> float:
    info = loc.fs.info(f"{loc.path}/{rel}")
    m = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or 0
    return m.timestamp() if hasattr(m, "timestamp") else float(m)
