"""``etl optimize | vacuum | restore``: table maintenance from the command line, and table history rows.

Register them on the main group::

    from etl.commands.maintenance import COMMANDS
    for command in COMMANDS:
        cli.add_command(command)

TABLE is a table name under ``--warehouse`` (default ``ETL_WAREHOUSE`` or
``./warehouse``) or a table URL. Errors are :class:`etl.EtlError` leaves, which
the main group turns into exit codes (3 configuration, 8 commit).
``etl history TABLE`` (in :mod:`etl.cli`) shows :func:`table_history_rows`.
"""

from __future__ import annotations

import json

import click

_WAREHOUSE = click.option("--warehouse", envvar="ETL_WAREHOUSE",
                          help="Warehouse root URL [default: ./warehouse].")
_JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _echo(result, as_json: bool) -> None:
    click.echo(json.dumps(result.to_dict(), indent=2, default=str) if as_json else str(result))


@click.command()
@click.argument("table")
@_WAREHOUSE
@click.option("--z-order", "z_order", multiple=True, metavar="COL",
              help="Cluster rows by this column inside each partition (repeatable).")
@click.option("--target-size", type=float, metavar="MB", help="Target file size in MiB [default: 100].")
@_JSON
def optimize(table: str, warehouse: str | None, z_order: tuple, target_size: float | None, as_json: bool) -> None:
    """Compact small files into large ones (optionally Z-ordered), in one commit.

    The content is unchanged; the commit is recorded as etl.operation=OPTIMIZE.
    """
    from etl.maintain import optimize as run, resolve

    _echo(run(resolve(table, warehouse), z_order=z_order, target_size_mb=target_size), as_json)


@click.command()
@click.argument("table")
@_WAREHOUSE
@click.option("--retention-hours", type=click.IntRange(min=0), metavar="H",
              help="Keep files removed less than H hours ago [default: the table's "
                   "delta.deletedFileRetentionDuration, else 168].")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--full", is_flag=True, help="Also delete files no commit references (left by killed runs).")
@click.option("--force-retention", is_flag=True,
              help="Allow a retention below 1 hour. Files of runs in flight stay protected regardless.")
@_JSON
def vacuum(table: str, warehouse: str | None, retention_hours: int | None, dry_run: bool, full: bool,
           force_retention: bool, as_json: bool) -> None:
    """Delete data files older than the retention that the table no longer references.

    Never deletes a file a run in flight may still commit or read: the retention
    is raised past the oldest live run lease (plus 15 minutes), whatever
    --force-retention says. Old versions lose their files: time travel before
    the retention stops working.
    """
    from etl.maintain import resolve, vacuum as run

    _echo(run(resolve(table, warehouse), retention_hours=retention_hours, dry_run=dry_run, force=force_retention,
              full=full), as_json)


@click.command()
@click.argument("table")
@_WAREHOUSE
@click.option("--version", "version", type=click.IntRange(min=0), required=True, metavar="N",
              help="The version to restore (see 'etl history').")
@_JSON
def restore(table: str, warehouse: str | None, version: int, as_json: bool) -> None:
    """Make version N the table's content again, as a new commit (etl.operation=RESTORE).

    Batches committed after N stay recorded: rerunning one is skipped unless --force.
    """
    from etl.maintain import resolve, restore as run

    _echo(run(resolve(table, warehouse), version), as_json)


def table_history_rows(table: str, warehouse: str | None, limit: int | None = None) -> list[dict]:
    """A table's commits, newest first, as flat rows for ``etl history TABLE`` (text, rich or JSON).

    Who (``run_id``, ``pipeline``, ``code_version``), what (``operation``, ``batch``) and the row
    counts from the commit's ``etl.rows``; None where a commit was not made by ``etl``.
    """
    from etl.maintain import history, resolve

    return [{"version": c.version, "timestamp": c.timestamp, "operation": _operation(c), "run_id": c.run_id,
             "pipeline": c.pipeline, "batch": c.batch, "code_version": c.code_version,
             **{k: c.rows.get(k) if c.rows else None for k in ("inserted", "updated", "deleted")}}
            for c in history(resolve(table, warehouse), limit)]


def _operation(c) -> str:
    """``MERGE``; ``VACUUM (VACUUM END)`` where the Delta operation says more than ours."""
    if c.etl_operation and c.operation.upper() not in (c.etl_operation.upper(), "WRITE"):
        return f"{c.etl_operation} ({c.operation})"
    return c.etl_operation or c.operation


COMMANDS = [optimize, vacuum, restore]
