"""Data files of a Delta table: writing staged files on workers, reading live ones.

A staged file has a name no other task can produce (the run id and a random
uuid), lives in its partition folder, and is invisible until the driver commits
it. Partition folder names never hold a raw value: values outside
``[A-Za-z0-9._-]`` are replaced by a digest (Delta readers take partition
values from the log, never from the path).

Examples
--------
>>> partition_dir({"ship_month": "1995-03", "region": "a/b"})
'ship_month=1995-03/region=_x0debd2558bca8fa0'
>>> staged_run_id("ship_month=1995-03/part-r20261122T063000-1a2b3c4d-0f0e.lz4raw.parquet")
'r20261122T063000-1a2b3c4d'
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import random
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl.define.target import CODECS, DEFAULT_CODEC
from etl.io.storage import Location, redact
from etl.policy.retry import RetryPolicy, is_transient_io, retry_call

log = logging.getLogger("etl.commit")

_SAFE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")
_STAGED = re.compile(r"part-(r[0-9]{8}T[0-9]{6}-[0-9a-f]{8})-[0-9a-f]+(\.[a-z0-9]+)?\.parquet$")
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


@dataclass(frozen=True)
class FileRef:
    """A live data file of the table: its path relative to the root and its partition values."""

    path: str
    partition_values: tuple  # sorted (column, string value or None) pairs
    size: int = 0
    num_records: int | None = None


def partition_string(value: Any) -> str | None:
    """A partition value in the string form the Delta log stores."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (bool,)):
        return "true" if value else "false"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    return str(value)


def partition_dir(values: Mapping[str, str | None]) -> str:
    """The folder for a partition, safe whatever the values hold."""
    parts = []
    for col, val in values.items():
        if val is None:
            token = NULL_PARTITION
        elif _SAFE.match(val):
            token = val
        else:
            token = "_x" + hashlib.blake2b(val.encode(), digest_size=8).hexdigest()
        parts.append(f"{col}={token}")
    return "/".join(parts)


def staged_name(run_id: str, codec: str = DEFAULT_CODEC) -> str:
    tag = CODECS[codec]
    return f"part-{run_id}-{uuid.uuid4().hex}{'.' + tag if tag else ''}.parquet"


def staged_run_id(path: str) -> str | None:
    """The run that staged a file, from its name (None for files not written by etl)."""
    m = _STAGED.search(path)
    return m.group(1) if m else None


def with_retries(call: Callable[[], Any], what: str, path: str, policy: RetryPolicy | None = None, *,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None) -> Any:
    """``call()``, one I/O call on a table file, made again after a transient I/O error.

    The wait follows ``policy`` (bounded exponential backoff, full jitter;
    default :meth:`RetryPolicy.from_env`). A permanent error, or the last
    transient one, propagates with a note naming the file and the attempts.

    Examples
    --------
    >>> calls = []
    >>> def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ConnectionResetError("reset by peer")
    ...     return "ok"
    >>> with_retries(flaky, "data file", "t/part-0.parquet", RetryPolicy(5, 0.0, 0.0)), len(calls)
    ('ok', 3)
    """
    def note(exc: BaseException, decision) -> None:
        exc.add_note(f"{what} {redact(path)}: failed after {decision.attempt + 1} attempt(s) ({decision.reason})")

    def warn(exc: BaseException, decision) -> None:
        log.warning("%s %s: %s: %s; attempt %d of %d, retrying in %.3fs", what, redact(path), type(exc).__name__,
                    exc, decision.attempt + 1, policy.max_attempts, decision.delay)

    policy = policy or RetryPolicy.from_env()
    return retry_call(call, policy, transient=is_transient_io, on_retry=warn, on_give_up=note, sleep=sleep, rng=rng)


def write_file(root: Location, table: pa.Table, partition_values: Mapping[str, str | None],
               run_id: str, policy: RetryPolicy | None = None, codec: str = DEFAULT_CODEC,
               not_null: frozenset | set | tuple = ()) -> dict:
    """Write one staged data file; return the add action as a plain dict.

    The partition columns are not stored in the file (Delta keeps them in the log),
    nor is an Arrow schema: the Parquet types alone say what each column is, so a
    column held as an Arrow dictionary reads back as its plain type, for every
    reader. Dictionary columns are written from their indices, without re-hashing,
    and without Parquet min/max statistics (Arrow's writer derives those by
    hashing the indices again, a tenth of the write); their Delta statistics
    come from the dictionary values the file uses (:func:`file_stats`). Columns
    named in ``not_null`` (the table's non-nullable columns) are written as
    Parquet ``REQUIRED`` columns, with no definition levels to encode or decode,
    as delta-rs and Spark do for non-nullable fields; should such a column hold a
    null after all, it is written ``OPTIONAL``. Transient I/O errors are retried
    (:func:`with_retries`): the name is unique, so writing it again is harmless.
    """
    data = table.drop_columns([c for c in partition_values if c in table.column_names])
    if any(pa.types.is_dictionary(t) for t in data.schema.types):
        data = data.unify_dictionaries()  # one dictionary per column: the writer keeps its indices as they are
    data = _required(data, not_null)
    with_stats = [f.name for f in data.schema if not pa.types.is_dictionary(f.type)]
    folder = partition_dir(partition_values)
    name = staged_name(run_id, codec)
    rel = f"{folder}/{name}" if folder else name
    dictionary = dictionary_columns(data)
    encodings = {name: "DELTA_BINARY_PACKED" for name in delta_columns(data, dictionary)}
    fs = root.fs
    target = f"{root.path}/{rel}"

    def put() -> tuple[int, pq.FileMetaData]:
        if folder:
            fs.makedirs(f"{root.path}/{folder}", exist_ok=True)
        footer: list = []
        with fs.open(target, "wb") as raw:  # straight to the store: no second copy of the file in memory
            sink = pa.PythonFile(raw, mode="w")
            pq.write_table(data, sink, compression=codec, use_dictionary=dictionary, metadata_collector=footer,
                           column_encoding=encodings or None, store_schema=False,
                           write_statistics=with_stats if len(with_stats) < data.num_columns else True)
            size = sink.tell()
        return size, footer[0]

    size, footer = with_retries(put, "writing data file", target, policy)
    stats = file_stats(data, footer)
    return {"path": rel, "size": size, "partition_values": json.dumps(dict(partition_values)),
            "modification_time": int(time.time() * 1000), "stats": json.dumps(stats),
            "num_records": data.num_rows}


def _required(table: pa.Table, not_null) -> pa.Table:
    """``table`` with the columns named in ``not_null`` marked non-nullable where they hold no null.

    Examples
    --------
    >>> t = _required(pa.table({"k": [1, 2], "v": [None, "a"]}), {"k", "v"})
    >>> [(f.name, f.nullable) for f in t.schema]
    [('k', False), ('v', True)]
    """
    required = {i for i, f in enumerate(table.schema)
                if f.nullable and f.name in not_null and table.column(i).null_count == 0}
    if not required:
        return table
    fields = [f.with_nullable(False) if i in required else f for i, f in enumerate(table.schema)]
    return pa.Table.from_arrays(table.columns, schema=pa.schema(fields))


def prefetch(root: Location, refs: list[FileRef], budget: int) -> int:
    """Ask the operating system to start reading whole local files into its page cache; return the bytes asked.

    A hint, not a read: it returns at once, and the files are read in the
    background while this worker does other work, so the full read that
    follows (a rewrite) does not wait on the disk. Only for local tables
    (object stores have no page cache to fill) and only while the files fit in
    ``budget`` bytes; a file that cannot be opened is skipped (its real read
    reports the error).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = tempfile.mkdtemp()
    >>> _ = pathlib.Path(d, "f.parquet").write_bytes(b"x" * 100)
    >>> prefetch(Location(d), [FileRef("f.parquet", (), 100)], budget=1000)
    100
    >>> prefetch(Location(d), [FileRef("f.parquet", (), 100)], budget=50)
    0
    """
    if root.kind != "local" or not hasattr(os, "posix_fadvise"):
        return 0
    asked = 0
    for ref in refs:
        if asked + ref.size > budget:
            break
        try:
            fd = os.open(f"{root.path}/{ref.path}", os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            asked += ref.size
        except OSError:
            pass
        finally:
            os.close(fd)
    return asked


def dictionary_columns(table: pa.Table, sample: int = 4096) -> list[str]:
    """Columns worth dictionary encoding: few distinct values in a sample spread over the column.

    Any flat type qualifies (dates, small integers and prices too, not only
    strings): a low-cardinality column shrinks to a few bits per row, which
    makes the file smaller and faster to read back. High-cardinality columns are
    left plain, since trying a dictionary on them costs a third of the write
    time and falls back to plain anyway. The sample is strided, so a column
    sorted by value (e.g. a key) is judged on the whole file, not its head.

    Examples
    --------
    >>> t = pa.table({"flag": ["a", "b"] * 5000, "id": range(10000)})
    >>> dictionary_columns(t)
    ['flag']
    """
    n = table.num_rows
    if n == 0:
        return []
    if n > sample:
        table = _rows_at(table, np.linspace(0, n - 1, sample).astype(np.int64))
    out = []
    for name, col in zip(table.column_names, table.columns):
        if pa.types.is_dictionary(col.type):  # low-cardinality by construction (see read_file)
            out.append(name)
            continue
        if pa.types.is_nested(col.type) or pa.types.is_null(col.type):
            continue
        if pc.count_distinct(col).as_py() <= max(1, len(col) // 4):
            out.append(name)
    return out


def _rows_at(table: pa.Table, positions: np.ndarray) -> pa.Table:
    """The rows at ascending ``positions``, gathered batch by batch: one take per record batch
    instead of one per column over its concatenated chunks (a merge's output has dozens).

    Examples
    --------
    >>> t = pa.concat_tables([pa.table({"x": [0, 1, 2]}), pa.table({"x": [3, 4]})])
    >>> _rows_at(t, np.array([1, 3, 4]))["x"].to_pylist()
    [1, 3, 4]
    """
    batches = table.to_batches()
    bounds = np.cumsum([0] + [b.num_rows for b in batches])
    cut = np.searchsorted(positions, bounds)
    return pa.Table.from_batches([b.take(pa.array(positions[cut[i]:cut[i + 1]] - bounds[i]))
                                  for i, b in enumerate(batches) if cut[i + 1] > cut[i]], schema=table.schema)


def delta_columns(table: pa.Table, dictionary: list[str]) -> list[str]:
    """Integer-like columns not dictionary encoded: written ``DELTA_BINARY_PACKED`` instead of plain.

    Keys, ids and timestamps (integers, dates, times, timestamps) store the
    differences between neighbouring values in as few bits as they need: an
    ascending key shrinks to a bit or two per value before compression, so the
    file is smaller and both writing and reading it are faster than plain
    values through the codec (measured on TPC-H line items: a third of the bytes
    of ``l_orderkey``, half the write time). A standard Parquet encoding, read
    by Spark 3.3+, delta-rs, DuckDB, polars and pyarrow.

    Examples
    --------
    >>> t = pa.table({"id": pa.array([1, 2, 3]), "day": pa.array([0, 1, 2], pa.date32()), "x": [0.5, 1.0, 2.0]})
    >>> delta_columns(t, dictionary=["day"])
    ['id']
    """
    chosen = set(dictionary)
    return [f.name for f in table.schema if f.name not in chosen and _delta_type(f.type)]


def _delta_type(typ: pa.DataType) -> bool:
    return (pa.types.is_integer(typ) or pa.types.is_date(typ) or pa.types.is_timestamp(typ)
            or pa.types.is_time(typ))


def _exact_stats_type(typ: pa.DataType) -> bool:
    return pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_string(typ) or pa.types.is_date32(typ)


def file_stats(table: pa.Table, metadata: pq.FileMetaData | None = None) -> dict:
    """Delta statistics (numRecords, min, max, nullCount) for the columns where they are exact.

    With the Parquet footer of the written file, min and max come from its
    column chunk statistics (no pass over the data); otherwise they are computed,
    for a dictionary column over the dictionary values its rows use.
    Floating columns holding NaN get no min/max (Parquet statistics skip NaN);
    strings longer than 32 characters get none either.

    Examples
    --------
    >>> t = pa.table({"k": [3, 1, None], "s": ["b", "a", "c"]})
    >>> file_stats(t)["minValues"], file_stats(t)["nullCount"]
    ({'k': 1, 's': 'a'}, {'k': 1, 's': 0})
    """
    mins, maxs, nulls = {}, {}, {}
    chunk_stats = _footer_stats(metadata, table.column_names) if metadata is not None else {}
    for name, col in zip(table.column_names, table.columns):
        nulls[name] = col.null_count
        typ = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        if col.null_count == len(col) or not _exact_stats_type(typ):
            continue
        if pa.types.is_floating(typ) and pc.any(pc.is_nan(col)).as_py():
            continue
        if name in chunk_stats:
            lo, hi = chunk_stats[name]
        elif typ != col.type:
            lo, hi = _dictionary_min_max(col)
        else:
            mm = pc.min_max(col).as_py()
            lo, hi = mm["min"], mm["max"]
        if lo is None or hi is None:
            continue
        if pa.types.is_string(typ) and (len(lo) > 32 or len(hi) > 32):
            continue
        if pa.types.is_date32(typ):
            lo, hi = lo.isoformat(), hi.isoformat()
        mins[name], maxs[name] = lo, hi
    return {"numRecords": table.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}


def _dictionary_min_max(col: pa.ChunkedArray) -> tuple:
    """(min, max) of a dictionary column: over the dictionary values its non-null rows use.

    Examples
    --------
    >>> col = pa.chunked_array([pa.array(["b", "z", None]).dictionary_encode()])
    >>> _dictionary_min_max(pa.chunked_array([col.chunk(0).slice(0, 1), col.chunk(0).slice(2)]))
    ('b', 'b')
    """
    lo = hi = None
    for chunk in col.chunks:
        indices = chunk.indices.drop_null().to_numpy(zero_copy_only=False)
        if not len(indices):
            continue
        used = np.bincount(indices, minlength=len(chunk.dictionary)) > 0
        mm = pc.min_max(chunk.dictionary.filter(pa.array(used))).as_py()
        if mm["min"] is None:
            continue
        lo = mm["min"] if lo is None else min(lo, mm["min"])
        hi = mm["max"] if hi is None else max(hi, mm["max"])
    return lo, hi


def _footer_stats(metadata: pq.FileMetaData, names: list[str]) -> dict:
    """Per column, (min, max) over all row groups of a Parquet footer; columns lacking them are left out."""
    out: dict = {}
    missing: set = set()
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for j in range(group.num_columns):
            chunk = group.column(j)
            name = chunk.path_in_schema
            st = chunk.statistics
            if name in missing or name not in names:
                continue
            if st is None or not st.has_min_max:
                if st is None or st.null_count != chunk.num_values:  # all-null chunks have no min/max
                    missing.add(name)
                    out.pop(name, None)
                continue
            lo, hi = out.get(name, (st.min, st.max))
            out[name] = (min(lo, st.min), max(hi, st.max))
    return out


def read_file(root: Location, ref: FileRef, schema: pa.Schema, columns: list[str] | None = None,
              policy: RetryPolicy | None = None, dictionary: tuple = ()) -> pa.Table:
    """Read a live data file with its partition columns restored, in schema order.

    Columns named in ``dictionary`` (string columns) come back as Arrow
    dictionary arrays where the file stores them with a small dictionary
    (:data:`SMALL_DICTIONARY` bytes at most), so a rewrite neither expands nor
    re-hashes them; elsewhere they have the schema's type. Transient I/O errors
    are retried (:func:`with_retries`).
    """
    parts = dict(ref.partition_values)
    wanted = columns or schema.names
    in_file = [c for c in wanted if c not in parts]
    path = f"{root.path}/{ref.path}"
    table = with_retries(lambda: _read_parquet(root.fs, path, in_file, dictionary), "reading data file",
                         path, policy)
    arrays, fields = [], []
    for name in wanted:
        field = schema.field(name)
        if name in parts:
            arr = pa.repeat(pa.scalar(parts[name], pa.string()), table.num_rows)
            arrays.append(arr if field.type == pa.string() else arr.cast(field.type))
        elif name in table.column_names:
            col = table.column(name)
            if pa.types.is_dictionary(col.type) and col.type.value_type == field.type:
                arrays.append(col)
                fields.append(pa.field(name, col.type, nullable=True))
                continue
            arrays.append(col if col.type == field.type else col.cast(field.type))
        else:  # a column added to the table after this file was written
            arrays.append(pa.nulls(table.num_rows, field.type))
        fields.append(pa.field(name, field.type, nullable=True))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


#: Largest dictionary page (bytes) of a column :func:`read_file` returns dictionary encoded.
SMALL_DICTIONARY = 256 << 10


def _read_parquet(fs, path: str, columns: list[str], dictionary: tuple) -> pa.Table:
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        present = [c for c in columns if c in pf.schema_arrow.names]
        small = _small_dictionaries(pf.metadata, [c for c in dictionary if c in present])
        if small:
            pf = pq.ParquetFile(f, metadata=pf.metadata, read_dictionary=small)
        return pf.read(columns=present, use_threads=True)


def _small_dictionaries(md: pq.FileMetaData, names: list[str]) -> list[str]:
    """Of ``names``, the byte-array columns stored dictionary-encoded with a small dictionary in every row group."""
    if not names or md.num_row_groups == 0:
        return []
    ok = set(names)
    for g in range(md.num_row_groups):
        group = md.row_group(g)
        for j in range(group.num_columns):
            chunk = group.column(j)
            name = chunk.path_in_schema
            if name not in ok:
                continue
            encoded = {"RLE_DICTIONARY", "PLAIN_DICTIONARY"} & set(chunk.encodings)
            if (chunk.physical_type != "BYTE_ARRAY" or not chunk.has_dictionary_page or not encoded
                    or chunk.data_page_offset - chunk.dictionary_page_offset > SMALL_DICTIONARY):
                ok.discard(name)
    return [n for n in names if n in ok]


def plain(table: pa.Table) -> pa.Table:
    """``table`` with its dictionary columns decoded to their value type (others untouched)."""
    if not any(pa.types.is_dictionary(t) for t in table.schema.types):
        return table
    return table.cast(pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type,
                                          nullable=f.nullable) for f in table.schema]))


def to_arrow(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """A pandas frame already checked against ``schema`` as an Arrow table."""
    loose = pa.schema([pa.field(f.name, f.type, nullable=True) for f in schema])
    return pa.Table.from_pandas(df[schema.names], schema=loose, preserve_index=False)
