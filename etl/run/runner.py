"""Running a pipeline: plan, stage on the cluster, commit once, report.

Flow: resolve the batch (``etl.planning``) → skip at once if its app transaction
is already in the table → build the Dask graph from the sources and the
transform → conform every partition to the schema → stage files on the workers
(merge, append or overwrite) → one exactly-once commit → :class:`RunResult`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from etl.commit import cleanup
from etl.commit.lineage import commit_metadata, new_run_id
from etl.commit.merge import MergeSpec
from etl.commit.table import ensure_table, open_table, snapshot
from etl.commit.transaction import Outcome, commit, commit_info, version_with_txn
from etl.define.pipeline import Pipeline
from etl.define.registry import load
from etl.errors import ClusterError, ConfigError, EtlError, SourceError
from etl.io import sources as io_sources
from etl.io.storage import Location
from etl.io.stores import check_conditional_put
from etl.observe.memory import StageMemory
from etl.observe.report import performance_report as dask_performance_report
from etl.planning.planner import Plan, make_plan, pipeline_kernels
from etl.policy.retry import RetryPolicy
from etl.run.cluster import connect, ship_code, tune_workers, warm_kernels
from etl.run.record import RunRecorder
from etl.run.result import RunResult
from etl.run.stage import (MergeStager, batch_fingerprint, conformed, fits_in_memory, overwrite_replanner,
                            stage_append)

log = logging.getLogger("etl.run")


def build_output(plan: Plan, run_id: str = ""):
    """The transform's output as a lazy Dask DataFrame (nothing computed but the malformed-file check).

    Sources declared ``on_malformed="quarantine"`` are screened first (:func:`etl.io.sources.screen`,
    one parallel pass that reads every file): ``plan.sources`` then holds them screened (same files
    and batch identity, plus the malformed files, which the read skips and the quarantine records).
    Source files are read with the pipeline's retry policy. Under a data contract with row checks,
    source rows carry their file and row position, for the quarantine.
    """
    import inspect

    from etl.policy.retry import effective

    p = plan.pipeline
    policy = effective(None, p.retry)
    plan.sources.update(io_sources.screen(plan.sources, policy))
    provenance = p.contract is not None and bool(p.contract.checks)
    frames = {name: io_sources.read(rs, provenance=provenance, policy=policy) for name, rs in plan.sources.items()}
    kwargs: dict[str, Any] = dict(frames)
    if "ctx" in inspect.signature(p.transform).parameters:
        kwargs["ctx"] = plan.context(run_id)
    return p.transform(**kwargs)


def run(pipeline: str | Pipeline, *, date: str | None = None, warehouse: str | None = None,
        client=None, scheduler: str | None = None, cluster=None, params: dict | None = None,
        force: bool = False, takeover: bool = False, backfill_id: str | None = None,
        retry: RetryPolicy | None = None, hook: Callable[[str], None] | None = None,
        performance_report: str | None = None) -> RunResult:
    """Run a pipeline once and commit its batch exactly once.

    Parameters
    ----------
    pipeline : str or Pipeline
        A pipeline object or a name found on the pipeline search path.
    date : str, optional
        Batch date ``YYYY-MM-DD`` (or ``today``/``yesterday``); None reads all input.
    warehouse : str, optional
        Warehouse root; default ``ETL_WAREHOUSE`` or ``./warehouse``.
    client : distributed.Client, optional
        Run on this client (e.g. a notebook's) instead of starting a cluster.
    scheduler : str, optional
        Address of a running Dask scheduler.
    cluster : str or Profile, optional
        A cluster profile by name (see ``cluster/README.md``): its scheduler address and TLS settings.
    params : dict, optional
        Free parameters, passed to the transform's ``ctx`` and recorded in the commit.
    force : bool
        Commit again even if this batch with this input was committed before.
    retry : RetryPolicy, optional
        Retry policy for transient failures (commits, table file I/O); default the pipeline's ``retry=``,
        else the environment's.
    hook : callable, optional
        Fault-injection point for tests, called as ``hook(point)``.
    performance_report : str, optional
        Write a Dask performance report (task stream, profiles) of the run's work on the cluster to this
        HTML file; needs bokeh where the scheduler runs. A batch skipped as already committed runs
        nothing on the cluster and writes no report.

    Returns
    -------
    RunResult
    """
    t0 = time.perf_counter()
    scheduler, security = _cluster_address(client, scheduler, cluster)
    p = load(pipeline) if isinstance(pipeline, str) else pipeline
    plan = _plan_without_demo(p, date, warehouse, params, retry)
    run_id = new_run_id()
    if plan is not None:
        skipped = _already_committed(plan, run_id, force, t0)
        if skipped is not None:
            return skipped
    with connect(client=client, scheduler=scheduler, security=security) as active, \
            dask_performance_report(performance_report):
        if plan is None:  # demo input first, on this cluster (a demo may run another pipeline)
            plan = make_plan(p, date=date, warehouse=warehouse, params=params, retry=retry)
            skipped = _already_committed(plan, run_id, force, t0)
            if skipped is not None:
                return skipped
        check_conditional_put(plan.target)  # refuse a store that would lose concurrent commits
        check_conditional_put(Location(plan.warehouse, p.target.storage_options))  # the ledger's store
        ship_code(active, p.module_file, getattr(p.transform, "__module__", None))
        tune_workers(active)
        warm_kernels(active, pipeline_kernels(p))
        app_id = plan.app_id(nonce=run_id if force else "")
        recorder = RunRecorder(plan, run_id, app_id, backfill_id=backfill_id, takeover=takeover)
        recorder.started()
        try:
            result = _execute(plan, run_id, app_id, _effective(retry, p.retry), hook, t0)
        except BaseException as exc:
            recorder.failed(exc)
            raise
        version = result.version if result.files_added or result.files_removed else None
        delta = result.fingerprint_delta
        if version is not None and delta is None:  # another run committed this batch: its commit says
            delta = commit_info(plan.target, version).get("etl.fingerprint_delta")
        recorder.succeeded(result.ledger_rows(), version, fingerprint=delta)
        return result


def _cluster_address(client, scheduler, cluster):
    """The scheduler address and TLS security of a profile, or of ``scheduler`` as given."""
    if cluster is None:
        return scheduler, None
    if client is not None or scheduler is not None:
        raise ConfigError("give one of client=, scheduler= or cluster=, not several.")
    from etl.run.profiles import load_profile

    prof = load_profile(cluster) if isinstance(cluster, str) else cluster
    return prof.address, prof.security()


def _plan_without_demo(p: Pipeline, date, warehouse, params, retry) -> Plan | None:
    """The plan, or None when demo input must be generated first."""
    try:
        plan = make_plan(p, date=date, warehouse=warehouse, params=params, generate_demo=False, retry=retry)
    except SourceError:
        if p.demo is None:
            raise
        return None
    if p.demo is not None and any(io_sources.is_empty(s) for s in plan.sources.values()):
        return None
    return plan


def _already_committed(plan: Plan, run_id: str, force: bool, t0: float) -> RunResult | None:
    if force:
        return None
    app_id = plan.app_id()
    existing = open_table(plan.target)
    if existing is None or existing.transaction_version(app_id) is None:
        return None
    log.info("batch %s of %s already committed (%s); nothing to do", plan.batch, plan.pipeline.name, app_id)
    version = version_with_txn(plan.target, existing, app_id)
    delta = commit_info(plan.target, version).get("etl.fingerprint_delta")
    RunRecorder(plan, run_id, app_id).already_committed(version, fingerprint=delta)
    return RunResult(plan.pipeline.name, run_id, plan.batch, str(plan.target), "skipped", version, app_id,
                     wall_seconds=time.perf_counter() - t0)


def _execute(plan: Plan, run_id: str, app_id: str, policy: RetryPolicy, hook, t0: float) -> RunResult:
    p, target = plan.pipeline, plan.pipeline.target
    schema = p.table_schema.arrow
    output = build_output(plan, run_id)  # lazy; a missing source fails here, before the table is touched
    dt = ensure_table(plan.target, schema, list(target.partition_by), target.allow_new_columns)
    cleanup.take_lease(plan.target, run_id)
    try:
        outcome, stages = _stage_and_commit(plan, output, run_id, app_id, policy, hook, dt, schema)
    except BaseException as exc:
        removed = _safe_remove(plan, run_id)
        log.error("run %s failed (%s); removed %d staged file(s), table unchanged", run_id,
                  type(exc).__name__, removed)
        if isinstance(exc, EtlError) or not isinstance(exc, Exception):
            raise
        if type(exc).__name__ in ("KilledWorker", "CommClosedError", "FutureCancelledError"):
            raise ClusterError(f"the Dask cluster lost the work of run {run_id}: {exc}. The table is unchanged; "
                               "rerun the same command.", run_id=run_id) from exc
        raise
    finally:
        cleanup.release_lease(plan.target, run_id)
    counts = outcome.staged.counts if outcome.staged else {}
    status = "committed" if outcome.committed else "skipped"
    return RunResult(
        p.name, run_id, plan.batch, str(plan.target), status, outcome.version, app_id,
        rows_read=stages.get("rows_read"), rows_in=counts.get("rows_in", 0), inserted=counts.get("inserted", 0),
        updated=counts.get("updated", 0), deleted=counts.get("deleted", 0),
        unchanged=counts.get("unchanged", 0), duplicates_dropped=counts.get("duplicates_dropped", 0),
        stale=counts.get("stale", 0), delete_not_found=counts.get("delete_not_found", 0),
        quarantined=stages.get("quarantined", 0),
        fingerprint=stages.get("fingerprint"),
        fingerprint_delta=_hex(outcome.staged.fingerprint) if outcome.committed and outcome.staged else None,
        files_added=counts.get("files_added", 0), files_removed=counts.get("files_removed", 0),
        attempts=outcome.attempts, recomputed=outcome.recomputed, wall_seconds=time.perf_counter() - t0,
        stages=stages)


def _stage_and_commit(plan: Plan, output, run_id: str, app_id: str, policy: RetryPolicy, hook, dt,
                      schema) -> tuple[Outcome, dict]:
    p, target = plan.pipeline, plan.pipeline.target
    stages: dict = {"rows_read": _rows_read(plan), "source_bytes_read": _source_bytes(plan)}
    memory = StageMemory()  # peak worker memory per stage; a no-op without a distributed client
    ts = time.perf_counter()
    with memory.stage("read_transform"):
        in_memory = True
        if p.contract is None:
            data = conformed(output, schema, target.delete_when, target.keys)
            in_memory = target.mode != "merge" or fits_in_memory(stages["source_bytes_read"], _cluster_memory())
            stages["batch"] = "in_memory" if in_memory else "streamed"
            if in_memory:
                data = _persisted(data)
            else:
                log.info("batch %s: %d source bytes are more than cluster memory holds comfortably; "
                         "streaming it (read twice, shuffled through disk)", plan.batch, stages["source_bytes_read"])
        else:
            data, stages["quarantined"] = _under_contract(plan, output, run_id, app_id, schema)
    stages["read_transform_seconds"] = round(time.perf_counter() - ts, 3)
    with memory.stage("stage"):
        spec = MergeSpec(plan.target, schema, target.keys, target.partition_by, target.order_by, run_id,
                         retry=policy, compression=target.compression)
        snap = snapshot(dt, list(target.keys))
        if target.mode == "merge":
            stager = MergeStager(data, spec, in_memory=in_memory)  # one pass: keys, bounds, fingerprint
            stages["fingerprint"] = stager.fingerprint
            staged, replan = stager.stage(snap), stager.replan
        else:
            stages["fingerprint"] = batch_fingerprint(data)
            staged = stage_append(data, spec, snap, overwrite=target.mode == "overwrite")
            replan = overwrite_replanner(spec) if target.mode == "overwrite" else (lambda s, now: s)
    stages.update(staged.timings)
    stages["stage_seconds"] = round(time.perf_counter() - ts, 3)
    def metadata(final) -> dict:  # built from what is finally committed (a conflict may redo the work)
        return commit_metadata(run_id=run_id, pipeline=p.name, batch=plan.batch, app_id=app_id,
                               params=plan.params, sources=[s.describe() for s in plan.sources.values()],
                               counts=dict(final.counts), module_file=p.module_file,
                               operation=target.mode.upper(), fingerprint=stages["fingerprint"],
                               fingerprint_delta=final.fingerprint)

    tc = time.perf_counter()
    with memory.stage("commit"):
        outcome = commit(plan.target, schema, list(target.partition_by), app_id, metadata, staged, replan, policy,
                         key_columns=list(target.keys), hook=hook)
    stages["commit_seconds"] = round(time.perf_counter() - tc, 3)
    final = outcome.staged if outcome.committed and outcome.staged else None
    stages["bytes_written"] = int(sum(int(a["size"]) for a in final.adds)) if final else 0
    if memory.peaks:
        stages["peak_memory"] = memory.to_dict()
    return outcome, stages


def _under_contract(plan: Plan, output, run_id: str, app_id: str, schema):
    """Check the contract on the workers, enforce it on the driver, then commit the quarantine.

    The quarantine is committed before the data, under a transaction derived from
    the batch's: a rerun skips it, and a crash between the two loses no row. Malformed
    source files (screened by :func:`build_output`) are one quarantine record each, count
    against the error budget, and are counted in the returned number of records quarantined.
    """
    import dask
    from datetime import datetime, timezone

    from etl.contracts import ContractStats, enforce, merge_stats, quarantine_table, quarantine_url, write_quarantine
    from etl.contracts.quarantine import malformed_frame
    from etl.run.stage import checked

    p = plan.pipeline
    screened = [rs for rs in plan.sources.values() if rs.malformed is not None]
    malformed = [m for rs in screened for m in rs.malformed]
    data, q_parts, s_parts = checked(output, p.contract, schema, p.target.delete_when, p.target.keys)
    files = ContractStats(files_in=sum(len(rs.files) for rs in screened), files_quarantined=len(malformed))
    stats = merge_stats([*dask.compute(*s_parts), files])
    enforce(p.contract, stats)
    for c in stats.warned:
        log.warning("contract check %s warned on %d row(s) of batch %s", c.name, c.violations, plan.batch)
    if stats.rows_quarantined or malformed:
        rows = list(dask.compute(*q_parts)) if stats.rows_quarantined else []
        table = quarantine_table([*rows, malformed_frame(malformed)], run_id=run_id, pipeline=p.name,
                                 batch=plan.batch, at=datetime.now(timezone.utc))
        write_quarantine(quarantine_url(plan.warehouse), table, app_id, p.target.storage_options)
    return data, stats.rows_quarantined + stats.files_quarantined


def _cluster_memory() -> int | None:
    """Total memory limit of the current cluster's workers (None: unknown or unlimited)."""
    from etl.run.cluster import current_client

    client = current_client()
    if client is None:
        return None
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info()["workers"].values()]
    return int(sum(limits)) if limits and all(limits) else None


def _persisted(frame):
    """Compute ``frame`` into cluster memory and wait, so errors and timings belong to this stage."""
    frame = frame.persist()
    try:
        from distributed import wait

        from etl.run.cluster import current_client

        if current_client() is not None:
            wait(frame)
    except ImportError:
        pass
    return frame


def _effective(retry: RetryPolicy | None, pipeline_retry: RetryPolicy | None) -> RetryPolicy:
    from etl.policy.retry import effective

    return effective(retry, pipeline_retry)


def _hex(value: int | None) -> str | None:
    return None if value is None else f"{value % (1 << 64):016x}"


def _source_bytes(plan: Plan) -> int:
    """Bytes of the source files the batch reads (malformed files set aside excluded)."""
    return int(sum(f[1] for rs in plan.sources.values() for f in rs.readable))


def _rows_read(plan: Plan) -> int | None:
    """Rows in the batch's input, from Parquet footers and Delta statistics; None if unknown (CSV/JSON)."""
    total = 0
    for rs in plan.sources.values():
        n = io_sources.count_rows(rs)
        if n is None:
            return None
        total += n
    return total


def _safe_remove(plan: Plan, run_id: str) -> int:
    try:
        return cleanup.remove_run_files(plan.target, run_id)
    except Exception as exc:  # never hide the run's own error behind a cleanup error
        log.warning("could not remove staged files of %s: %s; 'etl clean' will", run_id, exc)
        return 0
