"""Resolving sources to the files or table version a batch reads, and reading them with Dask.

Resolution happens on the driver before anything runs: it lists the files of
the batch (or the Delta version), which makes the plan inspectable and gives
the batch its input fingerprint. Reading happens on the workers, one task per
file, in two steps: :func:`fetch` the file's bytes, retrying transient I/O
errors inside the task (the pipeline's :class:`~etl.policy.retry.RetryPolicy`,
backoff with full jitter), then :func:`parse` them in memory, so that an error
of the parser is always the file's content and is never retried. A file that
cannot be fetched or parsed fails its batch with its name.

A source declared ``on_malformed="quarantine"`` is first :func:`screen`-ed:
one parallel pass fetches and parses every file and sets aside those that do
not parse (:class:`MalformedFile`); the read then skips them. That reads each
file twice, a cost only such sources pay.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from etl.define.schema import to_pandas
from etl.define.source import Source
from etl.errors import SourceError
from etl.io.storage import Location, redact, redact_text, secret_values
from etl.policy.retry import RetryPolicy, is_transient_io, retry_call

log = logging.getLogger("etl.io")

MESSAGE_CHARS = 500


@dataclass(frozen=True)
class MalformedFile:
    """A source file that could be fetched but not parsed, set aside whole.

    Attributes
    ----------
    path : str
        As resolved (as in :attr:`ResolvedSource.files`); show :attr:`shown` instead.
    size : int
        Bytes.
    format : str
    error : str
        The parser's exception class (``ArrowInvalid``, ``ParserError`` ...).
    message : str
        The parser's message, credentials masked, at most 500 characters.
    """

    path: str
    size: int
    format: str
    error: str
    message: str

    @property
    def shown(self) -> str:
        """The path as logs, errors and the quarantine show it (no credentials)."""
        return redact(self.path)


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
    on_malformed : {"fail", "quarantine"}
        As declared on the :class:`~etl.define.source.Source`.
    malformed : tuple of MalformedFile, or None
        None until :func:`screen` checked the files (``on_malformed="quarantine"``
        only); then the files set aside, which :attr:`readable` leaves out.
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
    on_malformed: str = "fail"
    malformed: tuple | None = None

    @property
    def readable(self) -> tuple:
        """The files the read takes: all of :attr:`files` but the :attr:`malformed` ones."""
        if not self.malformed:
            return self.files
        bad = {m.path for m in self.malformed}
        return tuple(f for f in self.files if f[0] not in bad)

    def fingerprint(self) -> str:
        """A digest of what is read: file names and sizes, or the table version (malformed files included)."""
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
        if self.malformed:
            d["malformed_files"] = len(self.malformed)
        return d


def fill(url: str, warehouse: str, date: str | None) -> str:
    """Replace ``{warehouse}`` and ``{date}`` (``*`` when no date) in a URL."""
    return url.replace("{warehouse}", warehouse.rstrip("/")).replace("{date}", date or "*")


def resolve(name: str, src: Source, warehouse: str, dates: tuple = (), policy: RetryPolicy | None = None
            ) -> ResolvedSource:
    """Pin ``src`` to the files (or Delta version) of the batch's ``dates`` (empty: all input).

    The listing is retried after a transient I/O error as ``policy`` decides (see :func:`retrying`).
    """
    dates = tuple(dates)
    if src.partitioned_by_path and len(dates) > 1:
        parts = [resolve(name, src, warehouse, (d,), policy) for d in dates]
        return ResolvedSource(**{**parts[0].__dict__, "url": fill(src.url, warehouse, None), "dates": dates,
                                 "files": tuple(f for part in parts for f in part.files)})
    url = fill(src.url, warehouse, dates[0] if (src.partitioned_by_path and dates) else None)
    common = dict(name=name, url=url, format=src.format, date_column=src.date_column,
                  dates=dates if (src.date_column or src.partitioned_by_path) else (),
                  read_options=dict(src.read_options), storage_options=src.storage_options,
                  on_malformed=src.on_malformed)
    if src.format == "delta":
        return _resolve_delta(src, url, common)
    loc = Location(url, src.storage_options)
    fs = loc.fs

    def listing() -> list:
        paths = sorted(_strictly(fs.glob, loc.path)) if any(c in url for c in "*?[") else (
            [loc.path] if fs.exists(loc.path) else [])
        if len(paths) == 1 and fs.isdir(paths[0]):
            paths = sorted(p for p in _strictly(fs.find, paths[0])
                           if not p.rsplit("/", 1)[-1].startswith(("_", ".")))
        return [(p, int(fs.size(p))) for p in paths]

    try:
        infos = retrying(listing, policy, url, f"the listing of source {name!r} at", src.storage_options)
    except SourceError as exc:
        exc.source = name
        raise
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    prefix = "" if protocol in ("file", "local") else f"{protocol}://"
    return ResolvedSource(files=tuple((prefix + p, s, None) for p, s in infos), **common)


def _raise_unless_missing(exc: OSError) -> None:
    if not isinstance(exc, FileNotFoundError):
        raise exc


def _strictly(call: Callable, path: str) -> Any:
    """``fs.glob(path)`` or ``fs.find(path)``, failing on a directory that cannot be listed.

    fsspec's generic walk leaves such a directory out (``on_error="omit"``): a dropped
    connection would silently shrink the batch. A filesystem whose listing is flat (s3fs's
    ``find`` without a depth) raises by itself and refuses the keyword.
    """
    try:
        return call(path, on_error=_raise_unless_missing)
    except TypeError as exc:
        if "on_error" not in str(exc):
            raise
        return call(path)


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


# ---------------------------------------------------------------- fetching, with retries

def retrying(call: Callable[[], Any], policy: RetryPolicy | None, path: str, what: str = "file",
             storage_options: Any = None, *, sleep: Callable[[float], None] = time.sleep,
             rng: random.Random | None = None) -> Any:
    """``call()``, made again after a transient I/O error as ``policy`` decides (backoff, full jitter).

    Parameters
    ----------
    call : callable
        One I/O call on the file at ``path`` (fetch it, read its footer).
    policy : RetryPolicy or None
        None: :meth:`RetryPolicy.from_env`.
    path : str
        The file, named (without credentials) in the log and the error.
    what : str
        What it is, e.g. ``"parquet file"``.
    storage_options : mapping, optional
        Their secrets are masked in messages.
    sleep, rng : optional
        The wait and the jitter's source (tests inject both).

    Raises
    ------
    SourceError
        A permanent error (a missing file, a refused permission, a damaged
        footer), or the last transient one once the policy's attempts are
        spent; names the file and says how many attempts were made.

    Notes
    -----
    Give it I/O only. pyarrow reports some damaged Parquet content as
    ``OSError``, which would be retried (boundedly) for nothing: the reads of
    whole files therefore fetch bytes here and parse them apart (:func:`parse`).
    """
    policy = policy or RetryPolicy.from_env()

    def give_up(exc: BaseException, decision) -> SourceError:
        n = decision.attempt + 1
        return SourceError(f"cannot read {what} {redact(path)}: {type(exc).__name__}: "
                           f"{_message(exc, storage_options)}{_advice(exc, decision.reason, n)}; nothing was "
                           "committed.", file=redact(path), attempts=n)

    def warn(exc: BaseException, decision) -> None:
        log.warning("reading %s %s failed (%s: %s); attempt %d of %d, retrying in %.3fs", what, redact(path),
                    type(exc).__name__, _message(exc, storage_options), decision.attempt + 1, policy.max_attempts,
                    decision.delay)

    return retry_call(call, policy, transient=is_transient_io, on_retry=warn, on_give_up=give_up, sleep=sleep,
                      rng=rng)


def _advice(exc: BaseException, reason: str, attempts: int) -> str:
    if reason == "attempts exhausted":
        return (f", after {attempts} attempts (transient I/O errors, retried with backoff). The store may be "
                "unreachable: rerun later")
    if isinstance(exc, OSError):
        return ". Check that the file exists and is readable, then rerun"
    return ". The file looks damaged: replace or remove it, then rerun"


def fetch(path: str, storage_options: Any = None, policy: RetryPolicy | None = None, *,
          sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None) -> bytes:
    """The bytes of one source file, transient I/O errors retried (see :func:`retrying`).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> _ = open(path, "w").write("x\\n1\\n")
    >>> fetch(path)
    b'x\\n1\\n'
    """
    return retrying(lambda: Location(path, storage_options).fs.cat_file(path), policy, path, "file",
                    storage_options, sleep=sleep, rng=rng)


def _message(exc: BaseException, storage_options: Any) -> str:
    return redact_text(str(exc), secret_values(storage_options))[:MESSAGE_CHARS]


# ---------------------------------------------------------------- parsing and reading (runs on workers)

def parse(data: bytes, fmt: str, read_options: Mapping | None = None) -> pd.DataFrame:
    """A file's bytes as a DataFrame; whatever it raises is the content's fault (nothing is fetched here).

    Examples
    --------
    >>> parse(b"a,b\\n1,x\\n", "csv").to_dict("records")
    [{'a': 1, 'b': 'x'}]
    >>> parse(b"PAR1 cut short", "parquet")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pyarrow.lib.ArrowInvalid: Could not open Parquet input source '<Buffer>': Parquet magic bytes not found...
    """
    if fmt in ("parquet", "delta"):
        return pq.read_table(pa.BufferReader(data))
    read_options = dict(read_options or {})
    if fmt == "csv":
        return pd.read_csv(io.BytesIO(data), **read_options)
    return pd.read_json(io.BytesIO(data), lines=True, **read_options)


def _read_one(spec: tuple, fmt: str, read_options: dict, storage_options: Any, date_column: str | None,
              dates: tuple, partition_schema: Any, provenance: bool = False,
              policy: RetryPolicy | None = None) -> pd.DataFrame:
    path, _, part_values = spec
    data = fetch(path, storage_options, policy)
    try:
        df = parse(data, fmt, read_options)
        del data
        if isinstance(df, pa.Table):
            df = to_pandas(_with_partitions(df, dict(part_values), partition_schema) if part_values else df)
    except MemoryError:
        raise
    except Exception as exc:
        raise SourceError(f"cannot parse {fmt} file {redact(path)}: {type(exc).__name__}: "
                          f"{_message(exc, storage_options)}. Replace or remove the file, then rerun, or declare "
                          "the source with on_malformed='quarantine' to set such files aside; nothing was "
                          "committed.", file=redact(path)) from None
    if provenance:
        df["_etl_source_file"] = redact(path)
        df["_etl_row"] = np.arange(len(df), dtype="int64")
    if date_column and dates:
        if date_column not in df.columns:
            raise SourceError(f"file {redact(path)} has no column {date_column!r} (the source's date_column); "
                              f"found {list(df.columns)}.", file=redact(path), column=date_column)
        df = df[df[date_column].astype(str).str[:10].isin(list(dates))].reset_index(drop=True)
    return df


def _fs(path: str, storage_options: Any):
    return Location(path, storage_options).fs


def _with_partitions(table: pa.Table, values: dict, schema: pa.Schema | None) -> pa.Table:
    for col, val in values.items():
        typ = schema.field(col).type if schema is not None and col in schema.names else pa.string()
        arr = pa.array([val] * table.num_rows, pa.string())
        table = table.append_column(pa.field(col, typ), arr.cast(typ) if typ != pa.string() else arr)
    return table


# ---------------------------------------------------------------- malformed files

def _probe(spec: tuple, fmt: str, read_options: dict, storage_options: Any,
           policy: RetryPolicy | None) -> MalformedFile | None:
    """None when the file parses; else what is wrong with it. A file that cannot be fetched raises."""
    path, size, _ = spec
    data = fetch(path, storage_options, policy)
    try:
        parse(data, fmt, read_options)
    except MemoryError:
        raise
    except Exception as exc:
        return MalformedFile(path, int(size), fmt, type(exc).__name__, _message(exc, storage_options))
    return None


def screen(sources: Mapping[str, ResolvedSource], policy: RetryPolicy | None = None) -> dict[str, ResolvedSource]:
    """``sources`` with those declared ``on_malformed="quarantine"`` checked, file by file.

    One parallel Dask pass (on the current client, if any) fetches and parses
    every file of those sources; a file that does not parse is listed in the
    returned source's :attr:`~ResolvedSource.malformed` and skipped by
    :func:`read`. Files, fingerprint and batch identity do not change. Other
    sources, and sources screened before, are returned as they are.

    Raises
    ------
    SourceError
        A file could not be fetched (missing, refused, or transient errors past
        the policy's attempts): that is no verdict on its content.
    """
    import dask

    todo = {n: rs for n, rs in sources.items() if rs.on_malformed == "quarantine" and rs.malformed is None}
    out = dict(sources)
    if not todo:
        return out
    probe = dask.delayed(_probe, pure=True)
    tasks = {n: [probe(f, rs.format, rs.read_options, rs.storage_options, policy) for f in rs.files]
             for n, rs in todo.items()}
    found = dict(zip(tasks, dask.compute(*tasks.values())))
    for name, rs in todo.items():
        bad = tuple(m for m in found[name] if m is not None)
        for m in bad:
            log.warning("source %r: %s file %s is malformed (%s: %s); set aside whole for the quarantine "
                        "(on_malformed='quarantine')", name, m.format, m.shown, m.error, m.message)
        out[name] = replace(rs, malformed=bad)
    return out


# ---------------------------------------------------------------- the Dask DataFrame of a source

def read(rs: ResolvedSource, provenance: bool = False, policy: RetryPolicy | None = None) -> dd.DataFrame:
    """A Dask DataFrame over the readable files of a resolved source, one partition per file.

    With ``provenance``, rows carry ``_etl_source_file`` and ``_etl_row`` (their position in the file).
    Each file's read retries transient I/O errors under ``policy`` (default :meth:`RetryPolicy.from_env`).
    """
    if not rs.files:
        raise SourceError(
            f"source {rs.name!r}: no files match {redact(rs.url)}"
            f"{' for ' + ', '.join(rs.dates) if rs.dates else ''}. Check the date and the URL, "
            "or generate the input first.", source=rs.name, file=redact(rs.url))
    if not rs.readable:
        shown = ", ".join(m.shown for m in rs.malformed[:5]) + (" ..." if len(rs.malformed) > 5 else "")
        raise SourceError(f"source {rs.name!r}: every one of its {len(rs.files)} file(s) is malformed ({shown}); "
                          "there is nothing to read. Replace the files, then rerun; nothing was committed.",
                          source=rs.name, file=rs.malformed[0].shown)
    policy = policy or RetryPolicy.from_env()
    partition_schema = None
    if rs.format == "delta":
        from deltalake import DeltaTable
        loc = Location(rs.url, rs.storage_options)
        partition_schema = pa.schema(DeltaTable(loc.url, version=rs.version,
                                                storage_options=loc.delta_options).schema())
    kw = dict(fmt=rs.format, read_options=rs.read_options, storage_options=rs.storage_options,
              date_column=rs.date_column, dates=rs.dates, partition_schema=partition_schema, provenance=provenance,
              policy=policy)
    meta = _meta(rs, partition_schema, kw)
    if provenance:
        meta = meta.assign(_etl_source_file=pd.Series([], dtype=object), _etl_row=pd.Series([], dtype="int64"))
    return dd.from_map(_read_one, list(rs.readable), meta=meta, enforce_metadata=False, **kw)


def _meta(rs: ResolvedSource, partition_schema, kw) -> pd.DataFrame:
    if partition_schema is not None:
        return to_pandas(partition_schema.empty_table())
    first = rs.readable[0]
    if rs.format == "parquet":
        path = first[0]
        schema = retrying(lambda: pq.read_schema(path, filesystem=_fs(path, rs.storage_options)), kw["policy"],
                          path, "parquet file", rs.storage_options)
        return to_pandas(schema.empty_table())
    return _read_one(first, **kw).head(0)


def count_rows(rs: ResolvedSource, policy: RetryPolicy | None = None) -> int | None:
    """Rows in a resolved source without reading its data (None when only a full read can tell).

    A malformed file set aside whole (:func:`screen`) counts as one: one record read, and
    one quarantined, so that rows read still equal rows committed + quarantined + duplicates dropped.
    """
    if rs.date_column:
        return None
    if rs.format == "parquet":
        total = len(rs.malformed or ())
        for path, _, _ in rs.readable:
            total += retrying(lambda: _footer_rows(path, rs.storage_options), policy, path, "parquet file",
                              rs.storage_options)
        return total
    if rs.format == "delta":
        from deltalake import DeltaTable

        loc = Location(rs.url, rs.storage_options)
        actions = pa.table(DeltaTable(loc.url, version=rs.version, storage_options=loc.delta_options)
                           .get_add_actions(flatten=True))
        return int(sum(n or 0 for n in actions.column("num_records").to_pylist()))
    return None


def _footer_rows(path: str, storage_options: Any) -> int:
    with _fs(path, storage_options).open(path, "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows
