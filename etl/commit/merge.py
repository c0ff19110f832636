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

from etl.define.schema import to_pandas

from etl.commit.files import FileRef, read_file, to_arrow, write_file
from etl.commit.keys import resolve_duplicates
from etl.commit.validate import DELETE_COL
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


def _same(a: pd.Series, b: pd.Series) -> np.ndarray:
    eq = (a.to_numpy(dtype=object) == b.to_numpy(dtype=object))
    both_null = a.isna().to_numpy() & b.isna().to_numpy()
    return np.asarray(eq, dtype=bool) | both_null


def write_rows(spec: MergeSpec, rows: pd.DataFrame) -> list[dict]:
    """Stage ``rows`` as one file per table partition; return the add actions."""
    if rows.empty:
        return []
    table = to_arrow(rows, spec.schema)
    if not spec.partition_by:
        return [write_file(spec.root, table, {}, spec.run_id)]
    from etl.commit.files import partition_string

    adds = []
    part = rows[list(spec.partition_by)].astype(object)
    grouping = part.apply(lambda r: tuple(partition_string(v) for v in r), axis=1)
    for values, positions in grouping.groupby(grouping, sort=True).indices.items():
        adds.append(write_file(spec.root, table.take(pa.array(positions)),
                               dict(zip(spec.partition_by, values)), spec.run_id))
    return adds


def merge_group(spec: MergeSpec, source: pd.DataFrame, files: list[FileRef]) -> GroupResult:
    """Merge the source rows of one group into ``files`` (possibly none).

    ``source`` holds the schema columns plus the boolean ``_etl_delete`` column.
    """
    keys = list(spec.keys)
    res = GroupResult()
    res.counts["rows_in"] += len(source)
    source, dropped = resolve_duplicates(source.reset_index(drop=True), keys, spec.order_by)
    res.counts["duplicates_dropped"] += dropped
    source = source.reset_index(drop=True)
    deletes = source[DELETE_COL].to_numpy(bool) if DELETE_COL in source else np.zeros(len(source), bool)
    target = _read_group(spec, files)
    if target.empty:
        res.counts["delete_not_found"] += int(deletes.sum())
        res.counts["inserted"] += int((~deletes).sum())
        res.adds += write_rows(spec, source.loc[~deletes, spec.schema.names])
        res.counts["files_added"] += len(res.adds)
        return res

    s_idx = pd.Series(np.arange(len(source)), name="_s")
    t_keys = target[keys].assign(_t=np.arange(len(target)))
    pairs = t_keys.merge(source[keys].assign(_s=s_idx), on=keys, how="inner")
    t_pos, s_pos = pairs["_t"].to_numpy(), pairs["_s"].to_numpy()
    matched_src = np.zeros(len(source), bool)
    matched_src[s_pos] = True
    stale = _older(source, target, s_pos, t_pos, spec.order_by)
    is_del = deletes[s_pos] & ~stale
    same = np.ones(len(pairs), bool)
    for col in spec.schema.names:
        same &= _same(target[col].iloc[t_pos].reset_index(drop=True), source[col].iloc[s_pos].reset_index(drop=True))
    changed = ~is_del & ~same & ~stale
    res.counts["deleted"] += int(is_del.sum())
    res.counts["updated"] += int(changed.sum())
    res.counts["unchanged"] += int((~is_del & same & ~stale).sum())
    res.counts["stale"] += int(stale.sum())
    res.counts["delete_not_found"] += int((deletes & ~matched_src).sum())
    inserts = ~matched_src & ~deletes
    res.counts["inserted"] += int(inserts.sum())

    gone = np.zeros(len(target), bool)
    gone[t_pos[is_del | changed]] = True
    touched = set(target["_etl_file"].to_numpy()[gone])
    keep = target[target["_etl_file"].isin(touched) & ~gone]
    new_rows = source.iloc[np.concatenate([s_pos[changed], np.flatnonzero(inserts)])]
    out = pd.concat([keep[spec.schema.names], new_rows[spec.schema.names]], ignore_index=True)
    res.adds += write_rows(spec, out)
    res.removes += [_remove(files[i]) for i in sorted(touched)]
    res.counts["files_added"] += len(res.adds)
    res.counts["files_removed"] += len(res.removes)
    return res


def _older(source: pd.DataFrame, target: pd.DataFrame, s_pos: np.ndarray, t_pos: np.ndarray,
           order_by: str | None) -> np.ndarray:
    """Matched source rows older than the table's row by ``order_by``: latest wins against the table too.

    So the table does not depend on the order batches commit in. A null order
    is older than any value; on equal values the source wins.
    """
    if order_by is None or not len(s_pos):
        return np.zeros(len(s_pos), bool)
    s = source[order_by].iloc[s_pos].reset_index(drop=True)
    t = target[order_by].iloc[t_pos].reset_index(drop=True)
    older = (s < t).fillna(False).to_numpy(bool)
    return older | (s.isna() & t.notna()).to_numpy(bool)


def _read_group(spec: MergeSpec, files: list[FileRef]) -> pd.DataFrame:
    frames = []
    for i, ref in enumerate(files):
        t = read_file(spec.root, ref, spec.schema)
        frames.append(to_pandas(t).assign(_etl_file=i))
    if not frames:
        return pd.DataFrame(columns=[*spec.schema.names, "_etl_file"])
    return pd.concat(frames, ignore_index=True)


def _remove(ref: FileRef) -> dict:
    return {"path": ref.path, "size": ref.size, "partition_values": json.dumps(dict(ref.partition_values))}
