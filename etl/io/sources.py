"""Resolving sources to the files or table version a batch reads, and reading them with Dask.

Resolution happens on the driver before anything runs: it lists the files of
the batch (or the Delta version), which makes the plan inspectable and gives
the batch its input fingerprint. Reading happens on the workers, one task per
file; a file that cannot be read fails with its name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa

from etl.define.schema import to_pandas
import pyarrow.parquet as pq

from etl.define.source import Source
from etl.errors import SourceError
from etl.io.storage import Location, redact


@dataclass(frozen=True)
class ResolvedSource:
    """A source pinned to what one batch reads.

    Attributes
    ----------
    name : str
    url : str
        The URL pattern with placeholders filled in.
    format : str
    files : tuple of (path, size, partition_values)
        Files read; for Delta, the live files of ``version``.
    version : int or None
        The Delta version read (Delta sources).
    """

    name: str
    url: str
    format: str
    files: tuple = ()
    version: int | None = None
    date_column: str | None = None
    dates: tuple = ()
    read_options: dict = field(default_factory=dict)
    storage_options: Any = field(default=None, repr=False)

    def fingerprint(self) -> str:
        """A digest of what is read: file names and sizes, or the table version."""
        h = hashlib.blake2b(digest_size=8)
        h.update(json.dumps([self.format, redact(self.url), self.version, list(self.dates),
                             [[f[0], f[1]] for f in self.files]]).encode())
        return h.hexdigest()

    def describe(self) -> dict:
        d = {"name": self.name, "url": redact(self.url), "format": self.format,
             "files": len(self.files), "bytes": int(sum(f[1] for f in self.files))}
        if self.version is not None:
            d["version"] = self.version
        if self.date_column:
            d["date_column"] = self.date_column
        return d


def fill(url: str, warehouse: str, date: str | None) -> str:
    """Replace ``{warehouse}`` and ``{date}`` (``*`` when no date) in a URL."""
    return url.replace("{warehouse}", warehouse.rstrip("/")).replace("{date}", date or "*")


def resolve(name: str, src: Source, warehouse: str, dates: tuple = ()) -> ResolvedSource:
    """Pin ``src`` to the files (or Delta version) of the batch's ``dates`` (empty: all input)."""
    dates = tuple(dates)
    if src.partitioned_by_path and len(dates) > 1:
        parts = [resolve(name, src, warehouse, (d,)) for d in dates]
        return ResolvedSource(**{**parts[0].__dict__, "url": fill(src.url, warehouse, None), "dates": dates,
                                 "files": tuple(f for part in parts for f in part.files)})
    url = fill(src.url, warehouse, dates[0] if (src.partitioned_by_path and dates) else None)
    common = dict(name=name, url=url, format=src.format, date_column=src.date_column,
                  dates=dates if (src.date_column or src.partitioned_by_path) else (),
                  read_options=dict(src.read_options), storage_options=src.storage_options)
    if src.format == "delta":
        return _resolve_delta(src, url, common)
    loc = Location(url, src.storage_options)
    fs = loc.fs
    try:
        paths = sorted(fs.glob(loc.path)) if any(c in url for c in "*?[") else (
            [loc.path] if fs.exists(loc.path) else [])
        if len(paths) == 1 and fs.isdir(paths[0]):
            paths = sorted(p for p in fs.find(paths[0]) if not p.rsplit("/", 1)[-1].startswith(("_", ".")))
        infos = [(p, int(fs.size(p))) for p in paths]
    except OSError as exc:
        raise SourceError(f"source {name!r}: cannot list {redact(url)}: {exc}. Check the URL and access.",
                          source=name, file=redact(url)) from None
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    prefix = "" if protocol in ("file", "local") else f"{protocol}://"
    return ResolvedSource(files=tuple((prefix + p, s, None) for p, s in infos), **common)


def _resolve_delta(src: Source, url: str, common: dict) -> ResolvedSource:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    loc = Location(url, src.storage_options)
    try:
        dt = DeltaTable(loc.url, version=src.version, storage_options=loc.delta_options)
    except TableNotFoundError:
        raise SourceError(f"source {common['name']!r}: no Delta table at {redact(url)}"
                          f"{' version ' + str(src.version) if src.version is not None else ''}. "
                          "Run the pipeline that creates it first, or fix the URL.",
                          source=common["name"], file=redact(url)) from None
    except Exception as exc:  # deltalake raises plain errors for a missing version
        raise SourceError(f"source {common['name']!r}: cannot open Delta table {redact(url)} "
                          f"(version {src.version}): {exc}.", source=common["name"], file=redact(url)) from None
    actions = pa.table(dt.get_add_actions(flatten=True))
    parts = [c for c in actions.column_names if c.startswith("partition.")]
    files = tuple(sorted((loc.url + "/" + a["path"], int(a["size_bytes"]),
                          tuple(sorted((c[len("partition."):], None if a[c] is None else str(a[c]))
                                       for c in parts))) for a in actions.to_pylist()))
    return ResolvedSource(files=files, version=dt.version(), **common)


def is_empty(rs: ResolvedSource) -> bool:
    return rs.format != "delta" and not rs.files


# ---------------------------------------------------------------- reading (runs on workers)

def _read_one(spec: tuple, fmt: str, read_options: dict, storage_options: Any, date_column: str | None,
              dates: tuple, partition_schema: Any, provenance: bool = False) -> pd.DataFrame:
    path, _, part_values = spec
    try:
        if fmt in ("parquet", "delta"):
            table = pq.read_table(path, filesystem=_fs(path, storage_options))
            if part_values:
                table = _with_partitions(table, dict(part_values), partition_schema)
            df = to_pandas(table)
        else:
            with Location(path, storage_options).fs.open(_path_in_fs(path)) as f:
                df = (pd.read_csv(f, **read_options) if fmt == "csv"
                      else pd.read_json(f, lines=True, **read_options))
    except Exception as exc:
        raise SourceError(f"cannot read {fmt} file {redact(path)}: {type(exc).__name__}: {exc}. "
                          "Replace or remove the file, then rerun; nothing was committed.",
                          file=redact(path)) from None
    if provenance:
        df["_etl_source_file"] = redact(path)
        df["_etl_row"] = np.arange(len(df), dtype="int64")
    if date_column and dates:
        if date_column not in df.columns:
            raise SourceError(f"file {redact(path)} has no column {date_column!r} (the source's date_column); "
                              f"found {list(df.columns)}.", file=redact(path), column=date_column)
        df = df[df[date_column].astype(str).str[:10].isin(list(dates))].reset_index(drop=True)
    return df


def _path_in_fs(path: str) -> str:
    return path


def _fs(path: str, storage_options: Any):
    return Location(path, storage_options).fs


def _with_partitions(table: pa.Table, values: dict, schema: pa.Schema | None) -> pa.Table:
    for col, val in values.items():
        typ = schema.field(col).type if schema is not None and col in schema.names else pa.string()
        arr = pa.array([val] * table.num_rows, pa.string())
        table = table.append_column(pa.field(col, typ), arr.cast(typ) if typ != pa.string() else arr)
    return table


def read(rs: ResolvedSource, provenance: bool = False) -> dd.DataFrame:
    """A Dask DataFrame over the files of a resolved source, one partition per file.

    With ``provenance``, rows carry ``_etl_source_file`` and ``_etl_row`` (their position in the file).
    """
    if not rs.files:
        raise SourceError(
            f"source {rs.name!r}: no files match {redact(rs.url)}"
            f"{' for ' + ', '.join(rs.dates) if rs.dates else ''}. Check the date and the URL, "
            "or generate the input first.", source=rs.name, file=redact(rs.url))
    partition_schema = None
    if rs.format == "delta":
        from deltalake import DeltaTable
        loc = Location(rs.url, rs.storage_options)
        partition_schema = pa.schema(DeltaTable(loc.url, version=rs.version,
                                                storage_options=loc.delta_options).schema())
    kw = dict(fmt=rs.format, read_options=rs.read_options, storage_options=rs.storage_options,
              date_column=rs.date_column, dates=rs.dates, partition_schema=partition_schema, provenance=provenance)
    meta = _meta(rs, partition_schema, kw)
    if provenance:
        meta = meta.assign(_etl_source_file=pd.Series([], dtype=object), _etl_row=pd.Series([], dtype="int64"))
    return dd.from_map(_read_one, list(rs.files), meta=meta, enforce_metadata=False, **kw)


def _meta(rs: ResolvedSource, partition_schema, kw) -> pd.DataFrame:
    if partition_schema is not None:
        return to_pandas(partition_schema.empty_table())
    if rs.format == "parquet":
        path = rs.files[0][0]
        try:
            schema = pq.read_schema(path, filesystem=_fs(path, rs.storage_options))
        except Exception as exc:
            raise SourceError(f"cannot read the schema of parquet file {redact(path)}: {exc}. "
                              "Replace or remove the file.", file=redact(path)) from None
        return to_pandas(schema.empty_table())
    return _read_one(rs.files[0], **kw).head(0)


def count_rows(rs: ResolvedSource) -> int | None:
    """Rows in a resolved source without reading its data (None when only a full read can tell)."""
    if rs.date_column:
        return None
    if rs.format == "parquet":
        total = 0
        for path, _, _ in rs.files:
            try:
                with _fs(path, rs.storage_options).open(path, "rb") as f:
                    total += pq.ParquetFile(f).metadata.num_rows
            except Exception as exc:
                raise SourceError(f"cannot read parquet file {redact(path)}: {type(exc).__name__}: {exc}. "
                                  "Replace or remove the file, then rerun; nothing was committed.",
                                  file=redact(path)) from None
        return total
    if rs.format == "delta":
        from deltalake import DeltaTable

        loc = Location(rs.url, rs.storage_options)
        actions = pa.table(DeltaTable(loc.url, version=rs.version, storage_options=loc.delta_options)
                           .get_add_actions(flatten=True))
        return int(sum(n or 0 for n in actions.column("num_records").to_pylist()))
    return None
