"""Schema drift: columns that appear in or vanish from the data, and the policy for them. Pure.

``"fail"`` (default)
    Any new or missing column fails the batch with :class:`~etl.errors.SchemaError`.
``"ignore"``
    New columns are dropped; missing nullable columns are filled with nulls.
``"evolve"``
    New columns are kept and reported with their Arrow types, so the runner
    adds them to the table (nullable, in a schema-change commit of its own:
    an append with an unknown column silently drops it); missing nullable
    columns are filled with nulls.

A missing not-null column (a merge key ...) always fails.

Examples
--------
>>> import pyarrow as pa, pandas as pd
>>> schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("note", pa.string())])
>>> df = pd.DataFrame({"id": [1, 2], "extra": [0.5, 1.5]})
>>> d = detect_drift(schema, df)
>>> d.new, d.missing
(('extra',), ('note',))
>>> apply_drift(df, schema, "ignore").columns.tolist()
['id', 'note']
>>> [f"{f.name}: {f.type}" for f in evolved_fields(schema, df)]
['extra: double']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import pandas as pd
import pyarrow as pa

from etl.errors import ConfigError, SchemaError

DRIFT_POLICIES = ("fail", "ignore", "evolve")
SOURCE_FILE_COL = "_etl_source_file"
ROW_COL = "_etl_row"
PROVENANCE_COLUMNS = (SOURCE_FILE_COL, ROW_COL)


@dataclass(frozen=True)
class Drift:
    """Columns found but not declared (``new``) and declared but not found (``missing``)."""

    new: tuple = ()
    missing: tuple = ()

    def __bool__(self) -> bool:
        return bool(self.new or self.missing)


def check_policy(policy: str) -> str:
    if policy not in DRIFT_POLICIES:
        raise ConfigError(f"schema_drift={policy!r} is not one of {DRIFT_POLICIES}.", value=policy)
    return policy


def detect_drift(schema: pa.Schema, df: pd.DataFrame, extra_allowed: Iterable[str] = ()) -> Drift:
    """How the columns of ``df`` differ from ``schema`` (provenance and ``extra_allowed`` columns aside)."""
    allowed = set(PROVENANCE_COLUMNS) | set(extra_allowed)
    new = tuple(c for c in df.columns if c not in schema.names and c not in allowed)
    missing = tuple(n for n in schema.names if n not in df.columns)
    return Drift(new, missing)


def apply_drift(df: pd.DataFrame, schema: pa.Schema, policy: str, extra_allowed: Iterable[str] = ()) -> pd.DataFrame:
    """``df`` made to fit ``schema`` under ``policy`` (new columns kept under ``evolve``).

    Raises
    ------
    SchemaError
        Under ``fail``, any drift; under every policy, a missing not-null column.
    """
    check_policy(policy)
    drift = detect_drift(schema, df, extra_allowed)
    if not drift:
        return df
    required = [n for n in drift.missing if not schema.field(n).nullable]
    if policy == "fail" or required:
        col = required[0] if required else (drift.new or drift.missing)[0]
        raise SchemaError(f"schema drift: new columns {list(drift.new)}, missing columns {list(drift.missing)} "
                          f"(declared {schema.names}); policy {policy!r}"
                          f"{f' cannot fill the not-null column {required[0]!r}' if required else ''}. Declare "
                          "the columns in the Schema, or set schema_drift='ignore' or 'evolve' on the Contract.",
                          column=col, new=list(drift.new), missing=list(drift.missing))
    out = df.drop(columns=list(drift.new)) if policy == "ignore" else df.copy()
    for name in drift.missing:
        out[name] = pd.Series(pd.arrays.ArrowExtensionArray(pa.nulls(len(out), schema.field(name).type)),
                              index=out.index)
    return out


def evolved_fields(schema: pa.Schema, df: pd.DataFrame, extra_allowed: Iterable[str] = ()) -> list[pa.Field]:
    """The nullable Arrow fields of the columns ``df`` has beyond ``schema`` (for ``evolve``).

    Give it the transform output's ``meta`` on the driver, once per run. A
    column of all nulls has no type to add and is reported as a SchemaError.
    """
    drift = detect_drift(schema, df, extra_allowed)
    if not drift.new:
        return []
    inferred = pa.Schema.from_pandas(df[list(drift.new)], preserve_index=False)
    untyped = [f.name for f in inferred if pa.types.is_null(f.type)]
    if untyped:
        raise SchemaError(f"schema drift: new column {untyped[0]!r} holds only nulls, so its type is unknown; "
                          "cast it in the transform or declare it in the Schema.", column=untyped[0])
    return [pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type, nullable=True)
            for f in inferred]
