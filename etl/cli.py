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
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def run(obj: dict, name: str, date: str | None, warehouse: str | None, scheduler: str | None,
        cluster: str | None, params: tuple, force: bool, as_json: bool) -> None:
    """Run a pipeline and commit its batch exactly once."""
    from etl.define.registry import load
    from etl.run.runner import run as run_pipeline

    if cluster and scheduler:
        raise click.UsageError("give --cluster or --scheduler, not both")
    result = run_pipeline(load(name, obj["paths"]), date=date, warehouse=warehouse, scheduler=scheduler,
                          cluster=cluster, params=_params(params), force=force)
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


def _params(pairs: tuple) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--param")
        out[key] = value
    return out


def main() -> None:
    cli(prog_name="etl")


if __name__ == "__main__":
    main()
