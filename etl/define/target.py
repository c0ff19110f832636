"""Targets: the Delta table a pipeline commits to, and how.

Three write modes:

``merge``
    Upsert by ``keys``: matched rows updated, unmatched inserted, rows flagged
    by ``delete_when`` deleted. Duplicate source keys are resolved by
    ``order_by`` (latest wins) or refused.
``append``
    Add the rows. Only for tables without keys: a blind append can duplicate a key.
``overwrite``
    Replace the table partitions the output touches, keep the others.

Examples
--------
>>> t = Target.merge("lineitem", keys=["l_orderkey", "l_linenumber"],
...                  partition_by=["ship_month"], order_by="l_updated_at")
>>> t.mode, t.keys
('merge', ('l_orderkey', 'l_linenumber'))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from etl.errors import ConfigError

MODES = ("merge", "append", "overwrite")
#: Parquet codecs a target may write its data files with, and the tag each gives a file name (as
#: Spark names them). ``lz4`` is Parquet's LZ4_RAW: about as fast to write as snappy and 4-10x
#: faster to decompress (measured: benchmarks/README.md).
CODECS = {"lz4": "lz4raw", "snappy": "snappy", "zstd": "zstd", "gzip": "gz", "none": ""}
DEFAULT_CODEC = "lz4"


@dataclass(frozen=True)
class Target:
    """The Delta table a pipeline writes.

    Parameters
    ----------
    table : str
        A table name (placed under the warehouse) or a full URL.
    mode : {"merge", "append", "overwrite"}
    keys : sequence of str
        Merge keys (``merge`` only). Never null.
    partition_by : sequence of str
        Table partition columns.
    order_by : str, optional
        Latest wins: among duplicate source keys the row with the greatest
        value is kept, and a source row older than the table's row for the
        same key is not applied (so the result does not depend on the order
        in which batches commit). Without it, duplicate source keys are an
        error and every matched source row is applied. A delete leaves no
        tombstone: an older row of a deleted key that arrives later is
        inserted again. Where batches may commit out of order, prefer a
        soft-delete column to ``delete_when``.
    delete_when : str, optional
        A boolean column of the transform's output (not of the schema): rows
        where it is true delete their key from the table.
    allow_new_columns : bool
        Let a declared nullable column that the table lacks be added, as its
        own schema-change commit. Off by default.
    compression : {"lz4", "snappy", "zstd", "gzip", "none"}
        Parquet codec of the data files written. ``lz4`` (Parquet's LZ4_RAW,
        the default) writes as fast as snappy and reads several times faster;
        deltalake, polars, DuckDB, pyarrow and Spark 3.5+ read it. Choose
        ``snappy`` for older readers (Spark before 3.5), ``zstd`` for smaller
        files at a higher write cost. Files already in the table keep theirs.
    storage_options : mapping, optional
        Store options; credentials belong in the environment.
    """

    table: str
    mode: str = "merge"
    keys: Sequence[str] = ()
    partition_by: Sequence[str] = ()
    order_by: str | None = None
    delete_when: str | None = None
    allow_new_columns: bool = False
    compression: str = DEFAULT_CODEC
    storage_options: Mapping[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        object.__setattr__(self, "partition_by", tuple(self.partition_by))
        if self.mode not in MODES:
            raise ConfigError(f"target {self.table!r}: unknown mode {self.mode!r}; expected one of {MODES}.")
        if self.mode == "merge" and not self.keys:
            raise ConfigError(f"target {self.table!r}: mode 'merge' needs keys=[...] to match rows on.")
        if self.mode != "merge" and (self.keys or self.order_by or self.delete_when):
            raise ConfigError(
                f"target {self.table!r}: keys, order_by and delete_when apply to mode 'merge' only; "
                f"found mode {self.mode!r}."
            )
        if self.compression not in CODECS:
            raise ConfigError(f"target {self.table!r}: unknown compression {self.compression!r}; "
                              f"expected one of {tuple(CODECS)}.")
        if self.mode == "overwrite" and not self.partition_by:
            raise ConfigError(f"target {self.table!r}: mode 'overwrite' replaces partitions; declare partition_by.")

    @classmethod
    def merge(cls, table: str, keys: Sequence[str], **kw: Any) -> "Target":
        return cls(table, "merge", keys=keys, **kw)

    @classmethod
    def append(cls, table: str, **kw: Any) -> "Target":
        return cls(table, "append", **kw)

    @classmethod
    def overwrite(cls, table: str, partition_by: Sequence[str], **kw: Any) -> "Target":
        return cls(table, "overwrite", partition_by=partition_by, **kw)
