"""Declared schemas: the columns and types a pipeline promises to produce.

A :class:`Schema` is declared, never inferred. The same declaration gives the
Dask ``meta`` of the output, the Arrow schema of the Delta table and the check
that every output partition passes before anything is committed.

Examples
--------
>>> s = Schema({"id": "int64", "name": "string", "day": "date32"}, not_null=["id"])
>>> s.names
['id', 'name', 'day']
>>> str(s.arrow.field("id").type), s.arrow.field("id").nullable
('int64', False)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

import pyarrow as pa

from etl.errors import ConfigError

_SIMPLE: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "date32": pa.date32(),
    "date": pa.date32(),
}
_TS = re.compile(r"^timestamp\[(s|ms|us|ns)(?:,\s*(UTC))?\]$")


def parse_type(spec: str | pa.DataType) -> pa.DataType:
    """Turn a type name such as ``"int64"`` or ``"timestamp[us, UTC]"`` into an Arrow type.

    Examples
    --------
    >>> parse_type("timestamp[us, UTC]")
    TimestampType(timestamp[us, tz=UTC])
    """
    if isinstance(spec, pa.DataType):
        return spec
    key = str(spec).strip()
    if key in _SIMPLE:
        return _SIMPLE[key]
    m = _TS.match(key)
    if m:
        return pa.timestamp(m.group(1), tz=m.group(2))
    raise ConfigError(
        f"unknown column type {spec!r}: expected one of {sorted(_SIMPLE)} or "
        "'timestamp[us]' / 'timestamp[us, UTC]'. Fix the type in the pipeline's Schema.",
        type=key,
    )


@dataclass(frozen=True)
class Schema:
    """The declared output columns of a pipeline, in order.

    Parameters
    ----------
    columns : mapping of str to str or pyarrow.DataType
        Column name to type, e.g. ``{"id": "int64", "ts": "timestamp[us, UTC]"}``.
    not_null : iterable of str, optional
        Columns that may never hold a null. Merge keys are always not-null. A null
        there is a :class:`~etl.errors.SchemaError` before anything is committed; the
        table declares them non-nullable and its data files store them as Parquet
        ``REQUIRED`` columns, which are smaller and faster to write and read.
    """

    columns: Mapping[str, str | pa.DataType]
    not_null: Iterable[str] = ()

    def __post_init__(self) -> None:
        cols = {str(k): parse_type(v) for k, v in dict(self.columns).items()}
        if not cols:
            raise ConfigError("a Schema needs at least one column; declare the output columns.")
        nn = tuple(self.not_null)
        unknown = [c for c in nn if c not in cols]
        if unknown:
            raise ConfigError(f"not_null names columns the schema lacks: {unknown}. Add them or drop them.")
        object.__setattr__(self, "columns", cols)
        object.__setattr__(self, "not_null", nn)

    @classmethod
    def from_arrow(cls, schema: pa.Schema) -> "Schema":
        """Declare a schema from an Arrow schema (nullability kept)."""
        return cls({f.name: f.type for f in schema}, not_null=[f.name for f in schema if not f.nullable])

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    @property
    def arrow(self) -> pa.Schema:
        """The Arrow schema of the table, with not-null columns marked."""
        return pa.schema([pa.field(n, t, nullable=n not in self.not_null) for n, t in self.columns.items()])

    def with_not_null(self, names: Iterable[str]) -> "Schema":
        """A copy where ``names`` are also not-null (used for merge keys)."""
        return Schema(self.columns, not_null=tuple(dict.fromkeys([*self.not_null, *names])))

    def meta(self):
        """An empty pandas frame with the output dtypes: the Dask ``meta``."""
        return to_pandas(self.arrow.empty_table())

    def describe(self) -> list[dict]:
        return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in self.arrow]


def _mapper(t: pa.DataType):
    import pandas as pd

    if pa.types.is_date(t):
        return pd.ArrowDtype(t)
    return None


def _exact_mapper(t: pa.DataType):
    import pandas as pd

    if pa.types.is_integer(t):
        name = str(t)
        return pd.api.types.pandas_dtype("UInt" + name[4:] if name.startswith("uint") else "Int" + name[3:])
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return _mapper(t)


def to_pandas(table: pa.Table, exact: bool = False):
    """Arrow to pandas the way every ``etl`` frame is built: dates stay dates.

    Plain ``to_pandas`` turns ``date32`` into Python objects, which Dask then
    converts to strings; ``etl`` keeps them as ``date32[pyarrow]``. With
    ``exact``, integers and booleans become pandas' nullable types, so a column
    with nulls keeps every value (plain conversion makes such integers float64,
    which rounds values beyond 2**53): used for the rows the framework writes.

    Examples
    --------
    >>> t = pa.table({"k": pa.array([2**53 + 1, None], pa.int64())})
    >>> to_pandas(t)["k"].dtype.name, to_pandas(t, exact=True)["k"].tolist()[0] == 2**53 + 1
    ('float64', True)
    """
    return table.to_pandas(types_mapper=_exact_mapper if exact else _mapper)
