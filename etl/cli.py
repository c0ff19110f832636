"""The ``etl`` command line: list, plan, run, clean.

Made for terminals and CI alike: no prompt, no TTY needed, exit code 0 only
on success and one code per failure class (see :mod:`etl.errors`)::

    0  success (including a batch skipped because it was already committed)
    1  unexpected internal error (a bug: please report it with the traceback)
    2  usage error (unknown option, missing argument)
    3  configuration error (pipeline declaration, unknown pipeline, bad --date)
    4  cluster error (scheduler unreachable, work lost)
    5  source error (input missing or unreadable)
    6  schema error (output does not match the declared schema, duplicate keys)
    7  contract error
    8  commit error (conflicts past the retry budget, unsafe store)
"""

from __future__ import annotations

import json
import logging
import sys
import traceback

import click

from etl.errors import EtlError


def _setup_logging(verbose: bool) -> None:
    from etl.observe.logs import configure

    configure(level=logging.DEBUG if verbose else logging.INFO)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EtlError as exc:
            click.echo(f"error ({type(exc).__name__}): {exc}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug: show where, exit 1
            traceback.print_exc()
            click.echo(f"internal error ({type(exc).__name__}): {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--pipelines", "paths", multiple=True, envvar="ETL_PIPELINES",
              help="Folder(s) holding pipeline modules [default: ./pipelines].")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="etl")
@click.pass_context
def cli(ctx: click.Context, paths: tuple[str, ...], verbose: bool) -> None:
    """Cluster-scale dataframe ETL into Delta Lake."""
    ctx.obj = {"paths": list(paths) or None}
    _setup_logging(verbose)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def list_cmd(obj: dict, as_json: bool) -> None:
    """The pipelines found on the search path."""
    from etl.api import list_pipelines

    pipes = list_pipelines(obj["paths"])
    rows = [{"name": p.name, "target": p.target.table, "mode": p.target.mode, "sources": list(p.sources),
             "description": p.description} for p in pipes]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no pipelines found (set --pipelines or ETL_PIPELINES)")
    for r in rows:
        click.echo(f"{r['name']:<28} {r['mode']:<9} -> {r['target']:<24} {r['description']}")


@cli.command()
@click.argument("name")
@click.option("--date", help="Batch date: YYYY-MM-DD, 'today' or 'yesterday' (UTC). Default: all input.")
@click.option("--warehouse", envvar="ETL_WAREHOUSE", help="Warehouse root URL [default: ./warehouse].")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="A free parameter (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plan(obj: dict, name: str, date: str | None, warehouse: str | None, params: tuple, as_json: bool) -> None:
    """What a run would read, write and touch, without running it."""
    from etl.api import plan as make
    from etl.define.registry import load

    result = make(load(name, obj["paths"]), date=date, warehouse=warehouse, params=_params(params))
    d = result.to_dict()
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
        return
    click.echo(f"pipeline   {d['pipeline']}  (batch {d['batch']})")
    for s in d["sources"]:
        extra = f", version {s['version']}" if "version" in s else ""
        click.echo(f"source     {s['name']}: {s['format']} {s['url']} ({s['files']} files, {s['bytes']:,} bytes{extra})")
    click.echo(f"target     {d['target']}")
    click.echo(f"mode       {d['mode']}" + (f" by {', '.join(d['merge_keys'])}" if d["merge_keys"] else "")
               + (f", latest by {d['order_by']}" if d["order_by"] else ""))
    click.echo(f"partitions {', '.join(d['partition_by']) or '(none)'}")
    click.echo(f"files      Parquet, {d['compression']}")
    touched = d["touched_partitions"] or []
    click.echo(f"touches    {len(touched)} partition(s)" + (": " + ", ".join(
        "/".join(f"{k}={v}" for k, v in t.items()) for t in touched[:12]) if touched else "")
        + (" ..." if len(touched) > 12 else ""))
    click.echo(f"txn        {d['app_id']}")


@cli.command()
@click.argument("name")
@click.option("--date", help="Batch date: YYYY-MM-DD, 'today' or 'yesterday' (UTC). Default: all input.")
@click.option("--warehouse", envvar="ETL_WAREHOUSE", help="Warehouse root URL [default: ./warehouse].")
@click.option("--scheduler", envvar="ETL_SCHEDULER", help="Dask scheduler address (tcp://host:8786).")
@click.option("--cluster", envvar="ETL_CLUSTER", metavar="PROFILE",
              help="Run on the cluster of this profile (cluster/README.md). Excludes --scheduler.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="A free parameter (repeatable).")
@click.option("--force", is_flag=True, help="Commit again even if this batch was already committed.")
@click.option("--takeover", is_flag=True, help="Run even if the ledger shows another run holding this batch.")
@click.option("--metrics-file", type=click.Path(dir_okay=False),
              help="Write the run's Prometheus metrics here (atomically), also on failure.")
@click.option("--performance-report", "report", type=click.Path(dir_okay=False), metavar="FILE.html",
              help="Write a Dask performance report (task stream, profiles) of the run here; needs bokeh "
                   "where the scheduler runs: pip install 'etl[report]'.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def run(obj: dict, name: str, date: str | None, warehouse: str | None, scheduler: str | None,
        cluster: str | None, params: tuple, force: bool, takeover: bool, metrics_file: str | None,
        report: str | None, as_json: bool) -> None:
    """Run a pipeline and commit its batch exactly once."""
    from etl.define.registry import load
    from etl.run.runner import run as run_pipeline

    if cluster and scheduler:
        raise click.UsageError("give --cluster or --scheduler, not both")
    try:
        result = run_pipeline(load(name, obj["paths"]), date=date, warehouse=warehouse, scheduler=scheduler,
                              cluster=cluster, params=_params(params), force=force, takeover=takeover,
                              performance_report=report)
    except Exception as exc:
        if metrics_file:
            from etl.observe.metrics import write_failure

            write_failure(name, getattr(exc, "exit_code", 1), metrics_file)
        raise
    if metrics_file:
        from etl.observe.metrics import write_prometheus

        write_prometheus(result, metrics_file)
    click.echo(json.dumps(result.to_dict(), indent=2, default=str) if as_json else str(result))


@cli.command()
@click.argument("table")
@click.option("--warehouse", envvar="ETL_WAREHOUSE", help="Warehouse root URL [default: ./warehouse].")
@click.option("--grace", default=3600.0, show_default=True, help="Only files older than this many seconds.")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
def clean(table: str, warehouse: str | None, grace: float, dry_run: bool) -> None:
    """Remove staged files no commit references, left by failed or killed runs.

    Never removes a file a running run may still commit: files of runs holding
    a live lease, and files younger than --grace, are kept.
    """
    from etl.commit.cleanup import find_orphans, remove_orphans
    from etl.io.storage import Location
    from etl.planning.planner import default_warehouse, table_url

    loc = Location(table_url(table, warehouse or default_warehouse()))
    orphans = find_orphans(loc, grace_seconds=grace)
    for o in orphans:
        click.echo(f"{'would remove' if dry_run else 'remove'} {o.path} (run {o.run_id}, {o.age_seconds:.0f}s old)")
    if not dry_run:
        remove_orphans(loc, orphans)
    click.echo(f"{len(orphans)} orphan file(s) {'found' if dry_run else 'removed'} in {loc}")


@cli.command()
@click.argument("name")
@click.option("--start", required=True, help="First date (YYYY-MM-DD), included.")
@click.option("--end", required=True, help="Last date (YYYY-MM-DD), included.")
@click.option("--batch-size", default="1d", show_default=True, help="Days per batch: 1, 3d, 1w.")
@click.option("--concurrency", default=1, show_default=True, type=int, help="Batches running at once.")
@click.option("--reprocess", type=click.Choice(["none", "failed", "all"]), default="none", show_default=True,
              help="Redo failed batches too, or everything.")
@click.option("--dry-run", is_flag=True, help="Print the batches and what each would read; run nothing.")
@click.option("--warehouse", envvar="ETL_WAREHOUSE", help="Warehouse root URL [default: ./warehouse].")
@click.option("--scheduler", envvar="ETL_SCHEDULER", help="Dask scheduler address (tcp://host:8786).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="A free parameter (repeatable).")
@click.option("--performance-report", "report", type=click.Path(dir_okay=False), metavar="FILE.html",
              help="Write a Dask performance report (task stream, profiles) of all the batches here; needs bokeh "
                   "where the scheduler runs: pip install 'etl[report]'.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def backfill(obj: dict, name: str, start: str, end: str, batch_size: str, concurrency: int, reprocess: str,
             dry_run: bool, warehouse: str | None, scheduler: str | None, params: tuple, report: str | None,
             as_json: bool) -> None:
    """Run a date range in batches, each committed once; rerun the same command to resume."""
    from etl.define.registry import load
    from etl.observe.progress import progress_bar
    from etl.planning.planner import default_warehouse
    from etl.run.backfill import backfill as run_backfill, dry_run_details

    p = load(name, obj["paths"])
    with progress_bar(f"backfill {name}") as progress:
        result = run_backfill(p, start, end, batch_size=batch_size, reprocess=reprocess, concurrency=concurrency,
                              dry_run=dry_run, warehouse=warehouse, scheduler=scheduler, params=_params(params),
                              progress=progress, performance_report=report)
    rows = result.rows()
    details = dry_run_details(p, result.batches, warehouse or default_warehouse(), _params(params)) if dry_run else []
    if as_json:
        click.echo(json.dumps({"backfill_id": result.backfill_id, "batches": rows, "reads": details,
                               "ok": result.ok, "resume": result.resume_command}, indent=2, default=str))
    else:
        for r in rows:
            click.echo(f"{r['batch']:<24} {r['action']:<5} {r['status']:<22} {r['reason']}")
        for d in details:
            reads = "; ".join(f"{s['name']}: {s['files']} files, {s['bytes']:,} bytes" for s in d.get("sources", []))
            click.echo(f"  {d['batch']}: {reads or d.get('error')}")
    if not result.ok:
        first = next(iter(result.errors.values()))
        click.echo(f"{len(result.errors)} batch(es) failed. Resume with:\n  {result.resume_command}", err=True)
        sys.exit(first.exit_code if isinstance(first, EtlError) else 1)


@cli.command()
@click.argument("name", required=False)
@click.option("--warehouse", envvar="ETL_WAREHOUSE", help="Warehouse root URL [default: ./warehouse].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(obj: dict, name: str | None, warehouse: str | None, as_json: bool) -> None:
    """Each batch's current state in the run ledger (all pipelines, or NAME's)."""
    from datetime import datetime, timezone

    from etl.api import list_pipelines
    from etl.ledger.store import Ledger
    from etl.planning.planner import default_warehouse

    ledger = Ledger(warehouse or default_warehouse())
    names = [name] if name else [p.name for p in list_pipelines(obj["paths"])]
    now = datetime.now(timezone.utc)
    rows = []
    for n in names:
        for s in ledger.batches(n):
            rows.append({"pipeline": n, "batch": s.batch, "state": "stale" if s.is_stale(now) else s.state,
                         "attempt": s.attempt, "run_id": s.run_id, "updated_at": s.updated_at.isoformat(),
                         "version": s.version, "rows": dict(s.rows), "error": s.error_message})
    _table(rows, ["pipeline", "batch", "state", "attempt", "version", "updated_at", "error"], as_json)


@cli.command()
@click.argument("name")
@click.option("--warehouse", envvar="ETL_WAREHOUSE", help="Warehouse root URL [default: ./warehouse].")
@click.option("--limit", default=50, show_default=True, help="Most recent attempts / commits shown.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def history(obj: dict, name: str, warehouse: str | None, limit: int, as_json: bool) -> None:
    """Every attempt of a pipeline's batches (from the ledger), or a table's commits (from its Delta log)."""
    from etl.define.registry import discover
    from etl.ledger.store import Ledger
    from etl.planning.planner import default_warehouse

    wh = warehouse or default_warehouse()
    if name not in discover(obj["paths"]):
        from etl.commands.maintenance import table_history_rows

        _table(table_history_rows(name, wh, limit), None, as_json)
        return
    rows = [{"batch": a.batch, "attempt": a.attempt, "status": a.status, "run_id": a.run_id,
             "started_at": a.started_at.isoformat(), "ended_at": a.ended_at.isoformat() if a.ended_at else None,
             "version": a.version, "rows": dict(a.rows), "error": a.error_class}
            for a in Ledger(wh).runs(name)][-limit:]
    _table(rows, ["batch", "attempt", "status", "version", "started_at", "ended_at", "error", "run_id"], as_json)


@cli.command()
@click.argument("name")
@click.option("--warehouse", envvar="ETL_WAREHOUSE", help="Warehouse root URL [default: ./warehouse].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def verify(obj: dict, name: str, warehouse: str | None, as_json: bool) -> None:
    """Re-check a pipeline's table against what the ledger recorded; exit 8 on any difference."""
    from etl.define.registry import load
    from etl.ledger import read_table_facts, verify as check
    from etl.ledger.store import Ledger
    from etl.planning.planner import default_warehouse, table_url

    p = load(name, obj["paths"])
    wh = warehouse or default_warehouse()
    facts = read_table_facts(table_url(p.target.table, wh), columns=p.table_schema.names,
                             storage_options=p.target.storage_options)
    report = check(name, Ledger(wh).history(name), facts.history, table_fingerprint=facts.fingerprint)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        click.echo(str(report))
    if not report.ok:
        sys.exit(8)


def _table(rows: list[dict], columns: list[str] | None, as_json: bool) -> None:
    """Rows as JSON, a rich table on a terminal, or aligned text elsewhere."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("(nothing recorded)")
        return
    columns = columns or list(rows[0])
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        t = Table(*columns)
        for r in rows:
            t.add_row(*["" if r.get(c) is None else str(r.get(c)) for c in columns])
        Console().print(t)
        return
    widths = {c: max(len(c), *(len(str(r.get(c) if r.get(c) is not None else "")) for r in rows)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        click.echo("  ".join(str(r.get(c) if r.get(c) is not None else "").ljust(widths[c]) for c in columns))


def _params(pairs: tuple) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--param")
        out[key] = value
    return out


from etl.commands.maintenance import COMMANDS as _MAINTENANCE  # noqa: E402

for _command in _MAINTENANCE:
    cli.add_command(_command)


def main() -> None:
    """The ``etl`` command: run it, flush its output, and exit with its code.

    The process then ends without the interpreter's teardown of every loaded
    module (pandas, numba, LLVM, distributed: about 0.7 s, most of a short
    run's overhead). Nothing is lost: clusters and clients are closed, files
    written and closed, and logs flushed before. ``ETL_FAST_EXIT=0`` keeps the
    normal teardown.
    """
    import os

    code: object = 0
    try:
        cli(prog_name="etl")
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):  # a message, as sys.exit("...") would print it
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.environ.get("ETL_FAST_EXIT", "1").strip() != "0":
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
