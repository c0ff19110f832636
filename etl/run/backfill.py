"""Backfills: a date range in batches, at most K at a time, each its own exactly-once commit.

Which batches run is decided by :func:`etl.policy.backfill.plan_backfill` from the
ledger, so rerunning the same command after a crash resumes: committed batches
are skipped, an interrupted one is redone (its commit, if it landed, is found by
its app transaction and not repeated). Transient failures (I/O, lost workers,
commit conflicts) are retried per batch with exponential backoff and full
jitter; permanent ones (schema, contract, configuration, bad code) are not.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from etl.define.pipeline import Pipeline
from etl.define.registry import load
from etl.errors import ConfigError, EtlError
from etl.ledger import Event, TransitionError
from etl.ledger.store import Ledger
from etl.observe.report import performance_report as dask_performance_report
from etl.planning.planner import default_warehouse, make_plan
from etl.policy.backfill import Batch, plan_backfill
from etl.policy.retry import PERMANENT, RetryPolicy, effective, is_transient
from etl.run.cluster import connect
from etl.run.result import RunResult

log = logging.getLogger("etl.backfill")

__all__ = ["BackfillResult", "PERMANENT", "backfill", "dry_run_details", "is_transient"]


@dataclass
class BackfillResult:
    """What a backfill did, batch by batch."""

    pipeline: str
    backfill_id: str
    batches: list
    results: dict = field(default_factory=dict)   # batch id -> RunResult
    errors: dict = field(default_factory=dict)    # batch id -> exception
    resume_command: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors

    def rows(self) -> list[dict]:
        out = []
        for b in self.batches:
            r, e = self.results.get(b.id), self.errors.get(b.id)
            status = (r.status if r else f"failed: {type(e).__name__}" if e else "skipped")
            out.append({"batch": b.id, "action": b.action, "status": status, "reason": b.reason,
                        "version": r.version if r else None, "inserted": r.inserted if r else 0,
                        "updated": r.updated if r else 0, "error": str(e)[:300] if e else None})
        return out


def backfill(pipeline: str | Pipeline, start: str, end: str, *, batch_size: str | int = "1d",
             reprocess: str = "none", concurrency: int = 1, dry_run: bool = False, warehouse: str | None = None,
             client=None, scheduler: str | None = None, params: dict | None = None,
             retry: RetryPolicy | None = None, progress=None,
             performance_report: str | None = None) -> BackfillResult:
    """Run ``pipeline`` over ``start..end`` (both included) in batches; see the module docstring.

    Parameters
    ----------
    batch_size : int or str
        Days per batch (``1``, ``"3d"``, ``"1w"``).
    reprocess : {"none", "failed", "all"}
        Redo failed batches too, or everything.
    concurrency : int
        Batches running at once (>= 1). Batches of a MERGE touching the same files conflict and
        recompute; 1-2 is usually best.
    dry_run : bool
        Plan only: decide the batches and resolve what each would read; run nothing.
    retry : RetryPolicy, optional
        Retries of failed batches and of their commits; default the pipeline's ``retry=``, else the
        environment's (:func:`etl.policy.retry.effective`). Source reads follow the pipeline's policy.
    progress : callable, optional
        ``progress(done, total, batch_id, status)`` after each batch.
    performance_report : str, optional
        Write one Dask performance report of all the batches run to this HTML file (needs bokeh where
        the scheduler runs).
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, found {concurrency}.")
    p = load(pipeline) if isinstance(pipeline, str) else pipeline
    warehouse = warehouse or default_warehouse()
    ledger = Ledger(warehouse, p.target.storage_options)
    batches = plan_backfill(start, end, batch_size, reprocess, ledger.batches(p.name))
    bid = "b" + time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
    out = BackfillResult(p.name, bid, batches, resume_command=_resume(p.name, start, end, batch_size, concurrency,
                                                                       warehouse))
    todo = [b for b in batches if b.runs]
    if dry_run or not todo:
        return out
    todo = _record_planned(ledger, p.name, todo, bid)
    if not todo:
        return out
    policy = effective(retry, p.retry)
    from etl.run.runner import run

    def one(batch: Batch) -> RunResult:
        rng = random.Random()
        for attempt in range(policy.max_attempts):
            try:
                return run(p, date=list(batch.dates), warehouse=warehouse, client=active, params=params,
                           backfill_id=bid, takeover=attempt > 0, retry=policy)
            except TransitionError as exc:  # another live run holds the batch: it is that run's to finish
                log.warning("batch %s is held by another run; leaving it to that run: %s", batch.id, exc)
                return RunResult(p.name, "", batch.id, "", "skipped", None, "")
            except BaseException as exc:
                decision = policy.decide(attempt, exc, rng)
                if not decision.retry:
                    raise
                wait = decision.delay
                log.warning("batch %s attempt %d failed (%s); retrying in %.2fs", batch.id, attempt + 1,
                            type(exc).__name__, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")

    with connect(client=client, scheduler=scheduler) as active, dask_performance_report(performance_report), \
            ThreadPoolExecutor(concurrency) as pool:
        futures = {pool.submit(one, b): b for b in todo}
        for done, fut in enumerate(as_completed(futures), 1):
            b = futures[fut]
            try:
                out.results[b.id] = fut.result()
            except Exception as exc:
                out.errors[b.id] = exc
                log.error("batch %s failed: %s: %s", b.id, type(exc).__name__, exc)
            if progress:
                progress(done, len(todo), b.id, out.results[b.id].status if b.id in out.results else "failed")
    return out


def _record_planned(ledger: Ledger, name: str, todo: list, bid: str) -> list:
    """Record the plan; batches another driver started meanwhile are left to it (not planned, not run)."""
    try:
        ledger.record_all([Event.planned(name, b.id, backfill_id=bid) for b in todo])
        return todo
    except TransitionError:
        kept = []
        for b in todo:
            try:
                ledger.record(Event.planned(name, b.id, backfill_id=bid))
                kept.append(b)
            except TransitionError as exc:
                log.warning("batch %s went live in another run while planning; leaving it: %s", b.id, exc)
        return kept


def _resume(name: str, start: str, end: str, batch_size, concurrency: int, warehouse: str) -> str:
    return (f"etl backfill {name} --start {start} --end {end} --batch-size {batch_size} "
            f"--concurrency {concurrency} --warehouse {warehouse} --reprocess failed")


def dry_run_details(p: Pipeline, batches: list[Batch], warehouse: str, params: dict | None = None) -> list[dict]:
    """What each batch to run would read: files and bytes per source (no demo input is generated)."""
    rows = []
    for b in batches:
        if not b.runs:
            continue
        try:
            plan = make_plan(p, date=list(b.dates), warehouse=warehouse, params=params, generate_demo=False)
            rows.append({"batch": b.id, "sources": [s.describe() for s in plan.sources.values()],
                         "target": str(plan.target), "app_id": plan.app_id()})
        except EtlError as exc:
            rows.append({"batch": b.id, "error": str(exc)})
    return rows
