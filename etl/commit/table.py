"""Opening, creating and evolving the target Delta table, and reading its snapshot.

A :class:`Snapshot` is what a run planned against: the table version and its
live files with their partition values and key statistics. The commit compares
it with the table's state at commit time to decide whether work must be redone.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from deltalake import DeltaTable, Field
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from etl.commit.files import FileRef
from etl.errors import CommitError, SchemaError
from etl.io.storage import Location, redact_text


@dataclass(frozen=True)
class Snapshot:
    """The live files of a table at one version."""

    version: int
    files: dict  # path -> FileRef
    stats: dict  # path -> {column: (min, max)} for key columns with statistics

    @property
    def paths(self) -> frozenset:
        return frozenset(self.files)


def open_table(loc: Location) -> DeltaTable | None:
    """The table at ``loc``, or None when there is none yet."""
    try:
        return DeltaTable(loc.url, storage_options=loc.delta_options)
    except TableNotFoundError:
        return None
    except OSError as exc:  # a missing bucket, a refused connection: name the table, hide secrets
        raise CommitError(f"table {loc}: cannot open it: {redact_text(str(exc), loc.secrets)}. Check the URL, "
                          "the store's endpoint and the credentials in the environment.", table=str(loc)) from None


def snapshot(dt: DeltaTable, key_columns: list[str] = ()) -> Snapshot:
    """The live files of ``dt`` (at its loaded version) with key min/max statistics."""
    actions = pa.table(dt.get_add_actions(flatten=True))
    cols = set(actions.column_names)
    parts = sorted(c[len("partition."):] for c in cols if c.startswith("partition."))
    files, stats = {}, {}
    for row in actions.to_pylist():
        pv = tuple((p, None if row[f"partition.{p}"] is None else str(row[f"partition.{p}"])) for p in parts)
        files[row["path"]] = FileRef(row["path"], pv, int(row["size_bytes"]), row.get("num_records"))
        stats[row["path"]] = {k: (row.get(f"min.{k}"), row.get(f"max.{k}")) for k in key_columns
                              if f"min.{k}" in cols and row.get(f"min.{k}") is not None}
    return Snapshot(dt.version(), files, stats)


def ensure_table(loc: Location, schema: pa.Schema, partition_by: list[str],
                 allow_new_columns: bool = False) -> DeltaTable:
    """Open the table, creating it (empty, version 0) or adding opted-in columns as needed.

    Raises
    ------
    SchemaError
        The existing table's columns, types or partitioning differ from the declaration.
    """
    dt = open_table(loc)
    if dt is None:
        try:
            DeltaTable.create(loc.url, schema, mode="ignore", partition_by=list(partition_by) or None,
                              storage_options=loc.delta_options)
        except CommitFailedError:
            pass  # another run created it at the same moment; check it below like any existing table
        dt = DeltaTable(loc.url, storage_options=loc.delta_options)
    _check_existing(dt, loc, schema, partition_by, allow_new_columns)
    return DeltaTable(loc.url, storage_options=loc.delta_options)


def _check_existing(dt: DeltaTable, loc: Location, schema: pa.Schema, partition_by: list[str],
                    allow_new_columns: bool) -> None:
    have = pa.schema(dt.schema())
    parts = list(dt.metadata().partition_columns)
    if parts != list(partition_by):
        raise SchemaError(f"table {loc}: partitioned by {parts}, but the pipeline declares {list(partition_by)}. "
                          "Change partition_by back, or write to a new table.", table=str(loc))
    for f in schema:
        if f.name in have.names and not _same_type(have.field(f.name).type, f.type):
            raise SchemaError(f"table {loc}: column {f.name!r}: the table has {have.field(f.name).type}, "
                              f"the pipeline declares {f.type}. Declare the table's type or migrate the table.",
                              column=f.name, expected=str(have.field(f.name).type), found=str(f.type))
    dropped = [n for n in have.names if n not in schema.names]
    if dropped:
        raise SchemaError(f"table {loc}: column {dropped[0]!r} exists in the table but not in the declared "
                          f"schema. Declare it (nullable) or migrate the table.", column=dropped[0])
    new = [f for f in schema if f.name not in have.names]
    if not new:
        return
    if not allow_new_columns or any(not f.nullable for f in new):
        raise SchemaError(f"table {loc}: the declared column {new[0].name!r} ({new[0].type}) is not in the table. "
                          "Set allow_new_columns=True on the Target to add nullable columns, as a schema-change "
                          "commit of its own.", column=new[0].name)
    try:
        dt.alter.add_columns([Field(f.name, _delta_type(f.type), nullable=True) for f in new])
    except Exception as exc:
        raise CommitError(f"table {loc}: adding columns {[f.name for f in new]} failed: {exc}.") from exc


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    norm = {pa.large_string(): pa.string(), pa.string_view(): pa.string()}
    return norm.get(a, a) == norm.get(b, b)


def _delta_type(t: pa.DataType):
    from deltalake.schema import Schema as DeltaSchema

    return DeltaSchema.from_arrow(pa.schema([pa.field("x", t)])).fields[0].type
