"""Finding the table to maintain, and the metadata every maintenance commit carries."""

from __future__ import annotations

import json

from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import TableNotFoundError

from etl.commit.lineage import PREFIX, code_version
from etl.commit.lineage import new_run_id  # noqa: F401  (re-exported for the commands)
from etl.errors import ConfigError
from etl.io.storage import Location
from etl.planning.planner import default_warehouse, table_url


def resolve(table: str, warehouse: str | None = None) -> Location:
    """A table name under the warehouse (default ``ETL_WAREHOUSE`` or ``./warehouse``), or a URL.

    Examples
    --------
    >>> resolve("lineitem", "/srv/wh").url
    '/srv/wh/lineitem'
    >>> str(resolve("s3://bucket/wh/lineitem"))
    's3://bucket/wh/lineitem'
    """
    return Location(table_url(table, warehouse or default_warehouse()))


def open_existing(loc: Location) -> DeltaTable:
    """The Delta table at ``loc``.

    Raises
    ------
    ConfigError
        There is no Delta table there (exit code 3).
    """
    try:
        return DeltaTable(loc.url, storage_options=loc.delta_options)
    except TableNotFoundError:
        raise ConfigError(f"no Delta table at {loc}: check the table name and --warehouse "
                          "(a table exists once a run has committed to it).", table=str(loc)) from None


def commit_properties(operation: str, run_id: str, params: dict) -> CommitProperties:
    """The commit's ``etl.*`` metadata: operation, run id, versions, options (no credentials)."""
    from etl import __file__ as etl_file, __version__

    return CommitProperties(custom_metadata={
        f"{PREFIX}operation": operation,
        f"{PREFIX}run_id": run_id,
        f"{PREFIX}code_version": code_version(etl_file),
        f"{PREFIX}framework_version": __version__,
        f"{PREFIX}params": json.dumps(params, sort_keys=True, default=str),
    })
