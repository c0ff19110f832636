"""Copy-on-write MERGE of one group of source rows into the table files that hold their keys.

This is the per-task logic of the cluster MERGE, free of Dask: it gets the
source rows routed to a group and the live files of that group, and returns
the add and remove actions plus counts. A file is rewritten only if a row in it
is really updated or deleted; identical updates leave it alone, so a rerun
rewrites nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.define.schema import to_pandas

from etl.commit.files import DEFAULT_CODEC, FileRef, partition_string, plain, read_file, to_arrow, write_file
from etl.commit.keys import resolve_duplicates
from etl.commit.validate import DELETE_COL, HASH_COL, ROW_HASH_COL
from etl.io.storage import Location
from etl.policy.retry import RetryPolicy
from etl.kernels import hash_table, match_keys

COUNTS = ("rows_in", "duplicates_dropped", "inserted", "updated", "deleted", "unchanged",
          "delete_not_found", "stale", "files_added", "files_removed")


@dataclass(frozen=True)
class MergeSpec:
    """What every merge task needs to know; small and picklable."""

    root: Location
    schema: pa.Schema
    keys: tuple
    partition_by: tuple = ()
    order_by: str | None = None
    run_id: str = ""
    #: Retries of transient I/O on the table's files (None: the environment's policy).
    retry: RetryPolicy | None = None
    #: Parquet codec of the files written (:data:`etl.define.target.CODECS`).
    compression: str = DEFAULT_CODEC


@dataclass
class GroupResult:
    """What one merge task staged: add and remove actions, counts, and the table's fingerprint delta.

    ``fingerprint`` is how the task changes the table's content fingerprint: the
    row hashes (:func:`etl.kernels.hash_rows` over the schema's columns) of the
    rows it writes minus those of the rows it replaces or deletes, mod 2**64.
    Rows a rewrite copies unchanged cancel out, so only changed rows are hashed.

    ``foreign`` counts the rows of the group's files whose key is a batch key
    routed to another group (see ``batch_hashes`` in :func:`merge_group`): when
    it is not zero the task staged nothing, and the batch must be routed by
    located keys instead.
    """

    adds: list = field(default_factory=list)
    removes: list = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    fingerprint: int = 0
    foreign: int = 0

    def extend(self, other: "GroupResult") -> None:
        self.adds += other.adds
        self.removes += other.removes
        self.counts.update(other.counts)
        self.fingerprint = (self.fingerprint + other.fingerprint) % _MOD
        self.foreign += other.foreign


_MOD = 1 << 64


def row_hashes(rows: pd.DataFrame, schema: pa.Schema) -> np.ndarray:
    """The row hashes of conformed rows: taken at conform time, or computed from their Arrow form."""
    if ROW_HASH_COL in rows:
        return rows[ROW_HASH_COL].to_numpy(np.uint64)
    return hash_table(to_arrow(rows, schema), schema.names)


def row_hash_sum(rows: pd.DataFrame, schema: pa.Schema) -> int:
    """Sum of :func:`row_hashes`, mod 2**64."""
    return int(np.add.reduce(row_hashes(rows, schema), dtype=np.uint64)) if len(rows) else 0


def _same(a, b) -> np.ndarray:
    """Row-wise equality of two aligned Arrow columns; null equals null, NaN equals NaN."""
    eq = pc.fill_null(pc.equal(a, b), False)
    same = pc.or_(eq, pc.and_(pc.is_null(a), pc.is_null(b)))
    if pa.types.is_floating(a.type):
        same = pc.or_(same, pc.fill_null(pc.and_(pc.is_nan(a), pc.is_nan(b)), False))
    return same.to_numpy(zero_copy_only=False)


def write_rows(spec: MergeSpec, rows: pd.DataFrame | pa.Table) -> list[dict]:
    """Stage ``rows`` as one file per table partition; return the add actions.

    The table's non-nullable columns are written as Parquet ``REQUIRED`` columns
    (see :func:`etl.commit.files.write_file`).
    """
    table = rows if isinstance(rows, pa.Table) else to_arrow(rows, spec.schema)
    if table.num_rows == 0:
        return []
    not_null = frozenset(f.name for f in spec.schema if not f.nullable)

    def write(part: pa.Table, values: dict) -> dict:
        return write_file(spec.root, part, values, spec.run_id, spec.retry, spec.compression, not_null)

    if not spec.partition_by:
        return [write(table, {})]
    cols = list(spec.partition_by)
    if all(len(pc.unique(table.column(c))) == 1 for c in cols):  # one partition: the usual rewrite
        values = [table.column(c)[0].as_py() for c in cols]
        return [write(table, {c: partition_string(v) for c, v in zip(cols, values)})]
    groups = to_pandas(table.select(cols)).groupby(cols, dropna=False, sort=True).indices
    adds = []
    for values, positions in groups.items():
        values = values if isinstance(values, tuple) else (values,)
        adds.append(write(table.take(pa.array(positions)), {c: partition_string(v) for c, v in zip(cols, values)}))
    return adds


EXTRA_COLS = (DELETE_COL, HASH_COL, ROW_HASH_COL)


def source_table(rows: pd.DataFrame, schema: pa.Schema, extra: tuple = ()) -> pa.Table:
    """Conformed source rows as Arrow: the schema's columns, then the framework's columns present.

    ``extra`` names more plain numpy columns to carry along (e.g. a group label).
    """
    table = to_arrow(rows, schema)
    for name in (*EXTRA_COLS, *extra):
        if name in rows:
            table = table.append_column(name, pa.array(rows[name].to_numpy()))
    return table


def _deduplicated(source: pa.Table, spec: MergeSpec) -> tuple[pa.Table, int]:
    """One row per key (see :func:`resolve_duplicates`); the common case, no duplicate, costs one kernel call."""
    from etl.kernels import duplicate_keys

    hashes = _key_hashes(source, spec.keys)
    if not len(duplicate_keys(hashes)):
        return source, 0
    frame = to_pandas(source.drop_columns([c for c in EXTRA_COLS if c in source.column_names]), exact=True)
    for name in EXTRA_COLS:
        if name in source.column_names:
            frame[name] = source.column(name).to_numpy()
    frame, dropped = resolve_duplicates(frame, list(spec.keys), spec.order_by)
    return source_table(frame.reset_index(drop=True), spec.schema), dropped


def _key_hashes(table: pa.Table, keys) -> np.ndarray:
    if HASH_COL in table.column_names:
        return table.column(HASH_COL).to_numpy()
    return hash_table(table, list(keys))


def _pairs(target: pa.Table, source: pa.Table, keys: list,
           t_hash: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the (target row, source row) pairs with equal keys, target rows in order.

    Matched by key hash, then confirmed on the key values; should two different
    keys share a hash, the pairs come from an exact join instead. ``t_hash``:
    the target's key hashes, if already taken.
    """
    s_hash = hash_table(source, keys)  # both sides hashed alike, from Arrow columns of the same types
    t_hash = hash_table(target, keys) if t_hash is None else t_hash
    t_pos = np.flatnonzero(match_keys(t_hash, s_hash))
    order = np.argsort(s_hash, kind="stable")
    s_pos = order[np.searchsorted(s_hash, t_hash[t_pos], sorter=order)]
    take_t, take_s = pa.array(t_pos, pa.int64()), pa.array(s_pos, pa.int64())
    exact = np.ones(len(t_pos), bool)
    for k in keys:
        exact &= _same(target.column(k).take(take_t), source.column(k).take(take_s).cast(target.schema.field(k).type))
    if exact.all():
        return t_pos, s_pos
    pairs = to_pandas(target.select(keys)).assign(_t=np.arange(target.num_rows)).merge(
        to_pandas(source.select(keys)).assign(_s=np.arange(source.num_rows)), on=keys, how="inner")
    pairs = pairs.sort_values("_t", kind="stable")
    return pairs["_t"].to_numpy(), pairs["_s"].to_numpy()


def merge_group(spec: MergeSpec, source: pd.DataFrame | pa.Table, files: list[FileRef],
                batch_hashes: np.ndarray | None = None) -> GroupResult:
    """Merge the source rows of one group into ``files`` (possibly none).

    ``source`` holds the schema columns plus, when there are deletes, the
    boolean ``_etl_delete`` column (an Arrow table as made by
    :func:`source_table`, or conformed pandas rows). Everything stays in Arrow:
    rows meet by key hash (confirmed on the key values), and matched rows are
    compared by row hash first and exactly only where the hashes agree.

    ``batch_hashes`` (sorted key hashes of the whole batch) is given when the
    group was made by partition rather than by located keys: should ``files``
    hold a batch key that is not among ``source``'s (a key whose rows moved to
    another partition, or a hash collision), the task writes nothing and
    reports it in :attr:`GroupResult.foreign`.
    """
    keys, names = list(spec.keys), spec.schema.names
    if isinstance(source, pd.DataFrame):
        source = source_table(source.reset_index(drop=True), spec.schema)
    res = GroupResult()
    res.counts["rows_in"] += source.num_rows
    source, dropped = _deduplicated(source, spec)
    res.counts["duplicates_dropped"] += dropped
    cols = source.column_names
    deletes = (source.column(DELETE_COL).to_numpy(zero_copy_only=False).astype(bool) if DELETE_COL in cols
               else np.zeros(source.num_rows, bool))
    src_hash = (source.column(ROW_HASH_COL).to_numpy() if ROW_HASH_COL in cols else hash_table(source, names))
    src = source.select(names)
    dictionary = _dictionary_candidates(spec)
    tables = _aligned([read_file(spec.root, ref, spec.schema, policy=spec.retry, dictionary=dictionary)
                       for ref in files])
    if not tables or sum(t.num_rows for t in tables) == 0:
        res.counts["delete_not_found"] += int(deletes.sum())
        res.counts["inserted"] += int((~deletes).sum())
        res.adds += write_rows(spec, src.filter(pa.array(~deletes)))
        res.fingerprint = int(np.add.reduce(src_hash[~deletes], dtype=np.uint64))
        res.counts["files_added"] += len(res.adds)
        return res
    target = pa.concat_tables(tables)
    file_of = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])
    t_hash = hash_table(target, keys)
    t_pos, s_pos = _pairs(target, source, keys, t_hash)
    if batch_hashes is not None:
        foreign = int(np.count_nonzero(match_keys(t_hash, batch_hashes))) - len(t_pos)
        if foreign:
            return GroupResult(counts=Counter(rows_in=res.counts["rows_in"]), foreign=foreign)
    old = plain(target.take(pa.array(t_pos, pa.int64())))
    new = src.take(pa.array(s_pos, pa.int64())).cast(old.schema)
    stale = _older(new, old, spec.order_by)
    is_del = deletes[s_pos] & ~stale
    old_hash, new_hash = hash_table(old, names), src_hash[s_pos]
    same = _same_rows(old, new, old_hash == new_hash)
    changed = ~is_del & ~same & ~stale
    matched_src = np.zeros(len(source), bool)
    matched_src[s_pos] = True
    inserts = ~matched_src & ~deletes
    res.counts.update(deleted=int(is_del.sum()), updated=int(changed.sum()),
                      unchanged=int((~is_del & same & ~stale).sum()), stale=int(stale.sum()),
                      delete_not_found=int((deletes & ~matched_src).sum()), inserted=int(inserts.sum()))
    gone = np.zeros(target.num_rows, bool)
    gone[t_pos[is_del | changed]] = True
    touched = np.unique(file_of[gone])
    kept = target.filter(pa.array(np.isin(file_of, touched) & ~gone))
    out = pa.concat_tables([kept, new.filter(pa.array(changed)).cast(kept.schema),
                            src.filter(pa.array(inserts)).cast(kept.schema)])
    res.adds += write_rows(spec, out)
    res.removes += [_remove(files[i]) for i in touched.tolist()]
    res.fingerprint = (int(np.add.reduce(new_hash[changed], dtype=np.uint64))
                       + int(np.add.reduce(src_hash[inserts], dtype=np.uint64))
                       - int(np.add.reduce(old_hash[is_del | changed], dtype=np.uint64))) % _MOD
    res.counts.update(files_added=len(res.adds), files_removed=len(res.removes))
    return res


def _dictionary_candidates(spec: MergeSpec) -> tuple:
    """String columns a rewrite may carry as Arrow dictionaries (:func:`read_file`): not the merge
    keys, partition columns or ordering column, which are compared and hashed."""
    fixed = {*spec.keys, *spec.partition_by, spec.order_by}
    return tuple(f.name for f in spec.schema if f.name not in fixed and pa.types.is_string(f.type))


def _aligned(tables: list) -> list:
    """Tables of one group with one schema: where files differ in which columns are dictionaries, none is."""
    if all(t.schema.equals(tables[0].schema) for t in tables[1:]):
        return tables
    return [plain(t) for t in tables]


def _same_rows(old: pa.Table, new: pa.Table, same_hash: np.ndarray) -> np.ndarray:
    """Which aligned rows are equal: rows whose hashes differ are not; the others are compared exactly."""
    same = same_hash.copy()
    idx = np.flatnonzero(same_hash)
    if len(idx):
        take = pa.array(idx, pa.int64())
        a, b = old.take(take), new.take(take)
        exact = np.ones(len(idx), bool)
        for col in a.column_names:
            exact &= _same(a.column(col), b.column(col))
        same[idx] = exact
    return same


def _older(new: pa.Table, old: pa.Table, order_by: str | None) -> np.ndarray:
    """Source rows older than the table's row for the same key by ``order_by`` (rows aligned).

    Latest wins against the table too, so the table does not depend on the
    order batches commit in. A null order is older than any value; on equal
    values the source wins.
    """
    if order_by is None or not new.num_rows:
        return np.zeros(new.num_rows, bool)
    s, t = new.column(order_by), old.column(order_by)
    older = pc.fill_null(pc.less(s, t), False)
    return pc.or_(older, pc.and_(pc.is_null(s), pc.is_valid(t))).to_numpy(zero_copy_only=False)


def _remove(ref: FileRef) -> dict:
    return {"path": ref.path, "size": ref.size, "partition_values": json.dumps(dict(ref.partition_values))}
