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

from etl.commit.files import FileRef, partition_string, read_file, to_arrow, write_file
from etl.commit.keys import resolve_duplicates
from etl.commit.validate import DELETE_COL, HASH_COL
from etl.io.storage import Location

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


@dataclass
class GroupResult:
    adds: list = field(default_factory=list)
    removes: list = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def extend(self, other: "GroupResult") -> None:
        self.adds += other.adds
        self.removes += other.removes
        self.counts.update(other.counts)


def _same(a, b) -> np.ndarray:
    """Row-wise equality of two aligned Arrow columns; null equals null, NaN equals NaN."""
    eq = pc.fill_null(pc.equal(a, b), False)
    same = pc.or_(eq, pc.and_(pc.is_null(a), pc.is_null(b)))
    if pa.types.is_floating(a.type):
        same = pc.or_(same, pc.fill_null(pc.and_(pc.is_nan(a), pc.is_nan(b)), False))
    return same.to_numpy(zero_copy_only=False)


def write_rows(spec: MergeSpec, rows: pd.DataFrame | pa.Table) -> list[dict]:
    """Stage ``rows`` as one file per table partition; return the add actions."""
    table = rows if isinstance(rows, pa.Table) else to_arrow(rows, spec.schema)
    if table.num_rows == 0:
        return []
    if not spec.partition_by:
        return [write_file(spec.root, table, {}, spec.run_id)]
    cols = list(spec.partition_by)
    if all(len(pc.unique(table.column(c))) == 1 for c in cols):  # one partition: the usual rewrite
        values = [table.column(c)[0].as_py() for c in cols]
        return [write_file(spec.root, table, {c: partition_string(v) for c, v in zip(cols, values)}, spec.run_id)]
    groups = to_pandas(table.select(cols)).groupby(cols, dropna=False, sort=True).indices
    adds = []
    for values, positions in groups.items():
        values = values if isinstance(values, tuple) else (values,)
        parts = {c: partition_string(v) for c, v in zip(cols, values)}
        adds.append(write_file(spec.root, table.take(pa.array(positions)), parts, spec.run_id))
    return adds


def merge_group(spec: MergeSpec, source: pd.DataFrame, files: list[FileRef]) -> GroupResult:
    """Merge the source rows of one group into ``files`` (possibly none).

    ``source`` holds the schema columns plus the boolean ``_etl_delete`` column.
    The table's files stay in Arrow; only the rows that match a source key are
    compared in pandas.
    """
    keys = list(spec.keys)
    res = GroupResult()
    res.counts["rows_in"] += len(source)
    source, dropped = resolve_duplicates(source.reset_index(drop=True), keys, spec.order_by,
                                         hashes=source[HASH_COL].to_numpy() if HASH_COL in source else None)
    res.counts["duplicates_dropped"] += dropped
    source = source.reset_index(drop=True)
    deletes = source[DELETE_COL].to_numpy(bool) if DELETE_COL in source else np.zeros(len(source), bool)
    tables = [read_file(spec.root, ref, spec.schema) for ref in files]
    if not tables or sum(t.num_rows for t in tables) == 0:
        res.counts["delete_not_found"] += int(deletes.sum())
        res.counts["inserted"] += int((~deletes).sum())
        res.adds += write_rows(spec, source.loc[~deletes, spec.schema.names])
        res.counts["files_added"] += len(res.adds)
        return res
    target = pa.concat_tables(tables)
    file_of = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])
    pairs = to_pandas(target.select(keys)).assign(_t=np.arange(target.num_rows)).merge(
        source[keys].assign(_s=np.arange(len(source))), on=keys, how="inner")
    t_pos, s_pos = pairs["_t"].to_numpy(), pairs["_s"].to_numpy()
    old_arrow = target.take(pa.array(t_pos, pa.int64()))
    new = source.iloc[s_pos].reset_index(drop=True)
    new_arrow = to_arrow(new, spec.schema).cast(old_arrow.schema)
    stale = _older(new, to_pandas(old_arrow.select([spec.order_by])) if spec.order_by else None, spec.order_by)
    is_del = deletes[s_pos] & ~stale
    same = np.ones(len(pairs), bool)
    for col in spec.schema.names:
        same &= _same(old_arrow.column(col), new_arrow.column(col))
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
    fresh = source.iloc[np.concatenate([s_pos[changed], np.flatnonzero(inserts)])]
    out = pa.concat_tables([kept, to_arrow(fresh, spec.schema).cast(kept.schema)])
    res.adds += write_rows(spec, out)
    res.removes += [_remove(files[i]) for i in touched.tolist()]
    res.counts.update(files_added=len(res.adds), files_removed=len(res.removes))
    return res


def _older(new: pd.DataFrame, old: pd.DataFrame, order_by: str | None) -> np.ndarray:
    """Source rows older than the table's row for the same key by ``order_by`` (rows aligned).

    Latest wins against the table too, so the table does not depend on the
    order batches commit in. A null order is older than any value; on equal
    values the source wins.
    """
    if order_by is None or not len(new):
        return np.zeros(len(new), bool)
    s, t = new[order_by], old[order_by]
    older = (s < t).fillna(False).to_numpy(bool)
    return older | (s.isna() & t.notna()).to_numpy(bool)


def _remove(ref: FileRef) -> dict:
    return {"path": ref.path, "size": ref.size, "partition_values": json.dumps(dict(ref.partition_values))}
