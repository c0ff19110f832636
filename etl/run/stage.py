"""Staging a batch on the cluster: conform, locate keys, route rows, write files.

Nothing here commits. Every function returns the add/remove actions of files
written by workers with unique names, plus counts; only those returned paths
may ever be committed (a task run twice leaves an orphan, never a duplicate).

MERGE at cluster scale, in four steps:

1. ``conform``: each output partition is checked against the schema and gets
   a 64-bit key hash (workers, in parallel).
2. ``locate``: one task per live table file that could hold a batch key (file
   statistics prune the rest) reads only the key columns and returns the
   batch keys it holds.
3. ``route``: each source row gets a group: the file holding its key, or a
   bucket of new keys; one shuffle makes every group whole in one partition.
4. ``apply``: each group is merged copy-on-write into its file
   (:func:`etl.commit.merge.merge_group`), in parallel.

A batch dense in the table partitions it touches (at least
:data:`FUSE_ROWS_PER_FILE` rows per file of each: every file will be
rewritten anyway) skips step 2 for those partitions: rows are grouped by the
partition they name, each apply task reads its files once and checks on the
way that they hold no batch key of another partition, while the files of the
other partitions are located as in step 2, in the same pass. Should a key have
moved partition, the staged files are deleted and the batch takes the four
steps (:meth:`MergeStager.stage`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa

from etl.define.schema import to_pandas

from etl.commit.files import FileRef, partition_string, prefetch, read_file
from etl.commit.keys import hash_keys, resolve_duplicates
from etl.kernels import fingerprint_table, hash_table, match_keys
from etl.commit.merge import COUNTS, GroupResult, MergeSpec, merge_group, row_hash_sum, source_table, write_rows
from etl.commit.table import Snapshot
from etl.commit.transaction import Staged, discard
from etl.commit.validate import DELETE_COL, HASH_COL, ROW_HASH_COL, conform

GROUP_COL = "_etl_group"
BIN_COL = "_etl_bin"
SMALL_SHUFFLE_ROWS = 2_000_000
#: MERGE batches up to this many rows reach the apply tasks by broadcast (each worker receives
#: the routed batch once, each task slices its rows out); larger ones held in cluster memory are
#: split in memory (each task fetches its slices), and the rest go through a p2p shuffle on disk.
BROADCAST_ROWS = 1_000_000
LOCATE_TASKS = 16
#: At most this many apply tasks; groups are packed into them by the rows they rewrite.
MAX_APPLY_TASKS = 64
#: A MERGE groups rows by table partition, without locating their keys first, when every table
#: partition the batch touches gets at least this many batch rows per live file in it, or holds at
#: most :data:`SMALL_PARTITION_ROWS` rows (read whole, it costs about what locating its keys does).
FUSE_ROWS_PER_FILE = 500
SMALL_PARTITION_ROWS = 65_536

log = logging.getLogger("etl.run")

# ------------------------------------------------------------------ 1. conform

def _conform_partition(df: pd.DataFrame, schema: pa.Schema, delete_when: str | None,
                       keys: tuple) -> pd.DataFrame:
    table = conform(df, schema, delete_when=delete_when)
    out = to_pandas(table, exact=True)
    out[ROW_HASH_COL] = hash_table(table, schema.names)
    if keys:  # the same hash as a table file's keys get in _locate
        out[HASH_COL] = hash_table(table, list(keys))
    return out


def conformed(out: dd.DataFrame, schema: pa.Schema, delete_when: str | None, keys: tuple) -> dd.DataFrame:
    """The transform's output checked against ``schema``, with row hashes, and key hashes for MERGE.

    Integers and booleans are pandas' nullable types here, so that no value
    changes on its way to the files (see :func:`etl.define.schema.to_pandas`).
    """
    meta = to_pandas(schema.empty_table(), exact=True)
    if delete_when:
        meta[DELETE_COL] = pd.Series([], dtype=bool)
    meta[ROW_HASH_COL] = pd.Series([], dtype="uint64")
    if keys:
        meta[HASH_COL] = pd.Series([], dtype="uint64")
    return out.map_partitions(_conform_partition, schema, delete_when, tuple(keys), meta=meta,
                              enforce_metadata=False)


def _check_partition(df: pd.DataFrame, contract, schema: pa.Schema, delete_when: str | None, keys: tuple,
                     duplicates: frozenset | None = None):
    from etl.contracts import EvalContext, evaluate

    good, quarantined, stats = evaluate(contract, df, EvalContext(
        schema=schema, extra_columns=(delete_when,) if delete_when else (), duplicate_keys=duplicates))
    return _conform_partition(good, schema, delete_when, keys), quarantined, stats


def _hash_partition(df: pd.DataFrame, columns: tuple) -> pd.Series:
    return pd.Series(hash_keys(df, list(columns)), dtype="uint64")


def _batch_duplicates(out: dd.DataFrame, contract) -> frozenset | None:
    """Hashes of the values a ``unique`` check sees more than once anywhere in the batch."""
    from etl.contracts import duplicate_hashes

    found: set = set()
    for check in (c for c in contract.checks if c.kind == "unique"):
        hashes = out.map_partitions(_hash_partition, tuple(check.columns), meta=pd.Series([], dtype="uint64"))
        found |= duplicate_hashes(hashes.compute().to_numpy())
    return frozenset(found) if found else None


def checked(out: dd.DataFrame, contract, schema: pa.Schema, delete_when: str | None, keys: tuple):
    """The output under a data contract: conformed good rows, quarantined rows and statistics.

    Returns ``(data, quarantine_parts, stats_parts)``: a Dask DataFrame held in
    cluster memory, and one delayed quarantine frame and statistics object per partition.
    """
    meta = conformed(out, schema, delete_when, keys)._meta
    duplicates = None
    if any(c.kind == "unique" for c in contract.checks):  # uniqueness is batch-wide: hash first, read once
        out = out.persist()
        duplicates = _batch_duplicates(out, contract)
    triples = [dask.delayed(_check_partition, nout=3)(part, contract, schema, delete_when, tuple(keys), duplicates)
               for part in out.to_delayed()]
    triples = dask.persist(*triples)
    data = dd.from_delayed([t[0] for t in triples], meta=meta, verify_meta=False)
    return data, [t[1] for t in triples], [t[2] for t in triples]


def _fingerprint_partition(df: pd.DataFrame) -> pd.Series:
    value = int(np.add.reduce(df[ROW_HASH_COL].to_numpy(np.uint64), dtype=np.uint64)) if len(df) else 0
    return pd.Series([value >> 32, value & 0xFFFFFFFF], dtype="int64")


def batch_fingerprint(data: dd.DataFrame) -> str:
    """Order-independent content fingerprint of a conformed batch: its row hashes summed, as 16 hex digits.

    The row hashes are :func:`etl.kernels.hash_table`'s, taken when each
    partition was conformed; equal multisets of rows give equal fingerprints, so
    two runs over the same input can be compared, and a table verified later.
    """
    return _fingerprint_hex(_fingerprint_parts(data).compute())


def _fingerprint_parts(data: dd.DataFrame) -> dd.Series:
    return data.map_partitions(_fingerprint_partition, meta=pd.Series([], dtype="int64"))


def _fingerprint_hex(parts: pd.Series) -> str:
    halves = parts.to_numpy().reshape(-1, 2)
    total = (int(halves[:, 0].sum()) << 32) + int(halves[:, 1].sum())
    return f"{total % (1 << 64):016x}"


#: Source bytes grow about this much held as conformed pandas frames (Parquet of TPC-H line items: 7.5x).
MEMORY_EXPANSION = 8
#: Share of the cluster's memory a persisted batch may take (Dask spills from 0.6).
MEMORY_SHARE = 0.4


def fits_in_memory(source_bytes: int, cluster_memory: int | None) -> bool:
    """Whether a batch read from ``source_bytes`` of files may be held in cluster memory.

    Examples
    --------
    >>> fits_in_memory(250 * 2**20, 24 * 2**30), fits_in_memory(2600 * 2**20, 24 * 2**30)
    (True, False)
    >>> fits_in_memory(10**12, None)  # no known limit: hold it
    True
    """
    return cluster_memory is None or source_bytes * MEMORY_EXPANSION <= MEMORY_SHARE * cluster_memory


# ------------------------------------------------------------------ append / overwrite

def _write_partition(df: pd.DataFrame, spec: MergeSpec) -> GroupResult:
    res = GroupResult(adds=write_rows(spec, df), fingerprint=row_hash_sum(df, spec.schema))
    res.counts.update(rows_in=len(df), inserted=len(df), files_added=len(res.adds))
    return res


def stage_append(data: dd.DataFrame, spec: MergeSpec, snap: Snapshot, overwrite: bool) -> Staged:
    """Write every partition's rows as new files; for overwrite, remove the partitions they touch."""
    adds, _, counts, fingerprint = _combine(dask.compute(*[dask.delayed(_write_partition)(part, spec)
                                                           for part in data.to_delayed()]))
    if not overwrite:
        return Staged(adds, [], snap, counts, fingerprint=fingerprint)
    touched = {a["partition_values"] for a in adds}
    return _overwrite_staged(adds, counts, snap, touched, fingerprint, spec)


def _files_fingerprint(spec: MergeSpec, refs: list) -> int:
    names = spec.schema.names
    total = sum(fingerprint_table(read_file(spec.root, ref, spec.schema, policy=spec.retry), names) for ref in refs)
    return total % (1 << 64)


def _overwrite_staged(adds: list, counts: dict, snap: Snapshot, touched: set, added: int,
                      spec: MergeSpec) -> Staged:
    norm = {json.dumps(dict(sorted(json.loads(t).items()))) for t in touched}

    def in_touched(ref: FileRef, stats=None) -> bool:
        return json.dumps(dict(sorted(ref.partition_values))) in norm

    gone = [r for r in snap.files.values() if in_touched(r)]
    removes = [{"path": r.path, "size": r.size, "partition_values": json.dumps(dict(r.partition_values))}
               for r in gone]
    counts = {**counts, "deleted": int(sum(r.num_records or 0 for r in gone)), "files_removed": len(removes)}
    removed = sum(dask.compute(*[dask.delayed(_files_fingerprint)(spec, c) for c in _chunks(gone, LOCATE_TASKS)]))
    return Staged(adds, removes, snap, counts, depends_on=in_touched, fingerprint=(added - removed) % (1 << 64),
                  added_fingerprint=added, timings={"table_bytes_read": int(sum(r.size for r in gone))})


def overwrite_replanner(spec: MergeSpec):
    """Overwrite after a concurrent commit: same new files, removes (and their fingerprint) listed again."""
    def replan(staged: Staged, now: Snapshot) -> Staged:
        touched = {a["partition_values"] for a in staged.adds}
        return _overwrite_staged(staged.adds, staged.counts, now, touched, staged.added_fingerprint, spec)
    return replan


# ------------------------------------------------------------------ merge

def _locate(spec: MergeSpec, refs: list, hashes: np.ndarray) -> tuple[list, int]:
    """For each file of a chunk, the batch key hashes it holds (reads only the key columns);
    and the bytes handed to the OS read-ahead.

    The key hashes are :func:`etl.kernels.hash_table`'s, as the batch's were
    taken at conform time; ``hashes`` is sorted (as :func:`numpy.unique` leaves
    it), so :func:`etl.kernels.match_keys` builds nothing large per file. A
    local file that holds keys is handed to :func:`etl.commit.files.prefetch`
    at once, so its rewrite does not wait on the disk.
    """
    keys = list(spec.keys)
    found, prefetched = [], 0
    budget = _prefetch_budget()
    for ref in refs:
        held = hash_table(read_file(spec.root, ref, spec.schema, columns=keys, policy=spec.retry), keys)
        found.append(np.unique(held[match_keys(held, hashes)]))
        if len(found[-1]):  # the apply stage reads this file whole: have the OS start on it now
            asked = prefetch(spec.root, [ref], budget)
            budget, prefetched = budget - asked, prefetched + asked
    return found, prefetched


def _read_ahead(spec: MergeSpec, refs: list) -> int:
    """Hand ``refs`` to the OS read-ahead (:func:`etl.commit.files.prefetch`, within a quarter of
    this machine's available memory); return the bytes asked. A MERGE grouped by partition has no
    locate pass to do this file by file, so one task does it for all its files as the stage starts
    (a hint: it returns at once, 0.17 s for the 84 files, 1.9 GB, of an SF10 rewrite)."""
    return prefetch(spec.root, refs, _prefetch_budget(share=1))


def _prefetch_budget(share: int = LOCATE_TASKS) -> int:
    """Bytes one task may ask the OS to read ahead: a quarter of this machine's available memory,
    shared by ``share`` tasks (the locate tasks, by default)."""
    import psutil

    return psutil.virtual_memory().available // (4 * share)


def _shuffle_method(rows: int) -> str:
    """Dask's task-based shuffle for small batches (p2p's fixed cost is seconds), p2p for large ones."""
    return "tasks" if rows < SMALL_SHUFFLE_ROWS else "p2p"


def _chunks(items: list, n: int) -> list:
    size = max(1, -(-len(items) // max(1, n)))
    return [items[i:i + size] for i in range(0, len(items), size)]


def _partition_codes(df: pd.DataFrame, partition_by: tuple) -> tuple[np.ndarray, list]:
    """Each row's table partition as a code into a list of Delta log string forms (JSON).

    Examples
    --------
    >>> codes, names = _partition_codes(pd.DataFrame({"m": ["b", "a", "b"]}), ("m",))
    >>> codes.tolist(), names
    ([0, 1, 0], ['{"m": "b"}', '{"m": "a"}'])
    """
    cols = list(partition_by)
    codes = np.zeros(len(df), dtype=np.int64)
    for c in cols:
        col_codes, uniques = pd.factorize(df[c], use_na_sentinel=False)
        codes = codes * max(1, len(uniques)) + col_codes
    codes, combos = pd.factorize(codes)
    first = np.empty(len(combos), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # each partition's first row
    rows = df[cols].iloc[first]
    names = [json.dumps({c: partition_string(v) for c, v in zip(cols, row)}, sort_keys=True)
             for row in rows.itertuples(index=False)]
    return codes.astype(np.int64), names


def _stable_hash(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode()) * 2654435761 % (1 << 63)


def _route(df: pd.DataFrame, routes: pd.Series, repeated: np.ndarray, part_groups: dict, first_new: int,
           new_groups: int, partition_by: tuple, bin_label: np.ndarray) -> pd.DataFrame:
    """Each row's group: the file group holding its key; else a group rewriting a file of its
    partition; else one new group per table partition. ``bin_label[group]`` says which apply
    task takes the group.

    Keys that occur more than once in the batch go by key hash instead, so all
    rows of a key meet in one group whatever partition each row names.
    """
    hashes = df[HASH_COL].to_numpy()
    group = routes.reindex(hashes).to_numpy()
    by_key = np.isin(hashes, repeated)
    if partition_by:
        codes, names = _partition_codes(df, partition_by)
        joins = np.array([part_groups.get(n, np.nan) for n in names], dtype="float64")[codes]
        group = np.where(np.isnan(group) & ~by_key, joins, group)
        spread = np.array([_stable_hash(n) for n in names], dtype=np.uint64)[codes]
    else:
        spread = np.zeros(len(df), dtype=np.uint64)
    spread = np.where(by_key, hashes, spread)
    new = (spread % np.uint64(new_groups)).astype("int64") + first_new
    out = df.copy()
    out[GROUP_COL] = np.where(np.isnan(group), new, np.nan_to_num(group, nan=-1)).astype("int64")
    out[BIN_COL] = bin_label[out[GROUP_COL].to_numpy()]
    return out


def _split(df: pd.DataFrame, schema: pa.Schema, nbins: int, *route_args) -> tuple[pa.Table, np.ndarray]:
    """One source partition routed (:func:`_route`) and sorted by apply task: its rows as Arrow, and
    where each task's rows start (task ``b`` takes rows ``starts[b]:starts[b + 1]``)."""
    routed = _route(df, *route_args)
    bins = routed[BIN_COL].to_numpy()
    table = source_table(routed, schema, extra=(GROUP_COL,))
    order = np.argsort(bins, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(bins, minlength=nbins))])
    return table.take(pa.array(order, pa.int64())), starts


def _apply_bin(spec: MergeSpec, group_files: dict, batch_hashes, b: int, *splits) -> GroupResult:
    """Apply task ``b`` of a broadcast MERGE: its rows from every routed source partition."""
    pieces = [t.slice(int(s[b]), int(s[b + 1] - s[b])) for t, s in splits if s[b + 1] > s[b]]
    return _apply_groups(spec, group_files, pa.concat_tables(pieces) if pieces else None, batch_hashes)


def _piece(split: tuple, b: int) -> pa.Table | None:
    """Apply task ``b``'s rows of one routed partition (None if it has none)."""
    table, starts = split
    return table.slice(int(starts[b]), int(starts[b + 1] - starts[b])) if starts[b + 1] > starts[b] else None


def _apply_pieces(spec: MergeSpec, group_files: dict, batch_hashes, *pieces) -> GroupResult:
    """Apply task of an in-memory MERGE: its pieces of the routed partitions."""
    pieces = [p for p in pieces if p is not None]
    return _apply_groups(spec, group_files, pa.concat_tables(pieces) if pieces else None, batch_hashes)


def _apply_frame(spec: MergeSpec, group_files: dict, df: pd.DataFrame) -> GroupResult:
    """Apply task of a shuffled MERGE: one shuffle output partition."""
    rows = source_table(df.reset_index(drop=True), spec.schema, extra=(GROUP_COL,)) if len(df) else None
    return _apply_groups(spec, group_files, rows)


def _apply_groups(spec: MergeSpec, group_files: dict, rows: pa.Table | None,
                  batch_hashes: np.ndarray | None = None) -> GroupResult:
    """Merge each group of ``rows`` (by ``_etl_group``) into its files.

    With ``batch_hashes`` (groups made by partition), each group's files are
    checked for batch keys of other groups (:func:`merge_group`); after the
    first group that holds one, the rest are skipped: the batch is routed again.
    While a group is merged, the operating system is asked to read the next
    group's files ahead (:func:`etl.commit.files.prefetch`).
    """
    total = GroupResult()
    if rows is None or not rows.num_rows:
        return total
    groups = rows.column(GROUP_COL).to_numpy()
    order = np.argsort(groups, kind="stable")
    rows = rows.drop_columns([GROUP_COL])
    if groups[0] != groups[-1] or (groups != groups[0]).any():
        rows = rows.take(pa.array(order, pa.int64()))
    ids, starts = np.unique(groups[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    ids = ids.tolist()
    for i, (gid, a, z) in enumerate(zip(ids, starts.tolist(), ends.tolist())):
        if i + 1 < len(ids):
            prefetch(spec.root, group_files.get(int(ids[i + 1]), []), PREFETCH_AHEAD)
        total.extend(merge_group(spec, rows.slice(a, z - a), group_files.get(int(gid), []), batch_hashes))
        if total.foreign:
            break
    return total


#: Bytes of the next group's files an apply task asks the OS to read ahead.
PREFETCH_AHEAD = 1 << 30


def _combine(results: list) -> tuple[list, list, dict, int]:
    """Adds, removes, summed counts and the summed fingerprint delta of the apply tasks' results."""
    total = GroupResult(counts=Counter({k: 0 for k in COUNTS}))
    for res in results:
        total.extend(res)
    return total.adds, total.removes, dict(total.counts), total.fingerprint


def _bins(costs: np.ndarray, nbins: int) -> np.ndarray:
    """Each group's bin: longest first, into the least loaded bin (balanced apply tasks).

    Examples
    --------
    >>> _bins(np.array([5, 1, 4, 2, 3]), 2).tolist()
    [0, 0, 1, 0, 1]
    """
    loads = np.zeros(nbins)
    out = np.zeros(len(costs), dtype=np.int64)
    for g in np.argsort(-costs, kind="stable"):
        b = int(np.argmin(loads))
        out[g], loads[b] = b, loads[b] + costs[g]
    return out


def bin_priorities(costs: np.ndarray, bins: np.ndarray, nbins: int) -> np.ndarray:
    """Each apply task's scheduling priority: the more rows it rewrites, the higher, so the longest
    tasks start first and the stage does not end waiting on one long task (longest-processing-time
    order; Dask runs a higher ``priority`` annotation first).

    Examples
    --------
    >>> bin_priorities(np.array([5, 1, 4, 2, 3]), np.array([0, 0, 1, 0, 1]), 2).tolist()
    [1, 0]
    >>> bin_priorities(np.array([1, 9]), np.array([0, 1]), 3).tolist()  # an empty task goes last
    [1, 2, 0]
    """
    loads = np.bincount(bins, weights=costs, minlength=nbins)
    ranks = np.empty(nbins, dtype=np.int64)
    ranks[np.argsort(loads, kind="stable")] = np.arange(nbins)
    return ranks


def _heaviest_first(costs: np.ndarray, bins: np.ndarray, nbins: int):
    """A builder of the apply tasks: ``make(b)`` for every task ``b``, annotated with its
    :func:`bin_priorities` priority."""
    priority = bin_priorities(costs, bins, nbins)

    def build(make) -> list:
        tasks = []
        for b in range(nbins):
            with dask.annotate(priority=int(priority[b])):
                tasks.append(make(b))
        return tasks
    return build


def _bin_labels(nbins: int) -> np.ndarray:
    """For each bin ``b``, a value that Dask's hash shuffle sends to output partition ``b``.

    Dask partitions a shuffle by ``hash(value as float64) % npartitions``; the
    values are found by trying small integers. Should Dask hash differently,
    groups still stay whole (one label per group), only the balance suffers.
    """
    from dask.dataframe.shuffle import partitioning_index

    labels = np.full(nbins, -1, dtype=np.int64)
    start = 0
    while (labels < 0).any() and start < 1 << 20:
        tries = np.arange(start, start + 64 * nbins, dtype=np.int64)
        index = np.asarray(partitioning_index(pd.DataFrame({BIN_COL: tries.astype("float64")}), nbins))
        for value, b in zip(tries.tolist(), index.tolist()):
            if labels[b] < 0:
                labels[b] = value
        start += 64 * nbins
    missing = labels < 0
    labels[missing] = np.flatnonzero(missing)
    return labels


def _overlaps(stats: dict, lo: dict, hi: dict) -> bool:
    for col, (fmin, fmax) in stats.items():
        if col in lo and lo[col] is not None and fmin is not None:
            try:
                if fmax < lo[col] or fmin > hi[col]:
                    return False
            except TypeError:
                continue
    return True


class MergeStager:
    """Stages one MERGE batch; can redo it against a newer snapshot after a conflict."""

    def __init__(self, data: dd.DataFrame, spec: MergeSpec, in_memory: bool = True):
        """One pass over ``data`` for its key hashes, key bounds, row count and fingerprint.

        ``in_memory`` says whether ``data`` is held in cluster memory (persisted):
        a batch too large for that is read again by the shuffle to the apply
        tasks, which then goes through disk (p2p) instead of memory.
        """
        self.data, self.spec, self.in_memory = data, spec, in_memory
        key_frame = data[[*spec.keys, HASH_COL]]
        part_keys = [k for k in spec.keys if k in spec.partition_by]
        by_part = [_rows_by_partition(data, spec.partition_by)] if spec.partition_by else []
        hashes, lo, hi, n, fp, *part_values = dask.compute(
            key_frame[HASH_COL], key_frame[list(spec.keys)].min(), key_frame[list(spec.keys)].max(),
            key_frame.shape[0], _fingerprint_parts(data), *by_part, *[data[k].drop_duplicates() for k in part_keys])
        #: Batch rows per table partition (Delta log form, as JSON), if the table is partitioned: every
        #: partition named here gets rows (a partition grouping checks the files of those alone).
        self.part_rows = _summed(part_values.pop(0)) if by_part else {}
        self.fingerprint = _fingerprint_hex(fp)
        self.hashes, counts = np.unique(hashes.to_numpy(np.uint64), return_counts=True)
        self.repeated = self.hashes[counts > 1]
        self.rows = int(n)
        self.dropped = 0
        if len(self.repeated):  # settle duplicate keys first, in a shuffle of only their rows
            self.data = _deduplicated(data, self.repeated, spec)
            self.dropped = self.rows - int(self.data.shape[0].compute())
            self.repeated = self.repeated[:0]
            if spec.partition_by:  # a key's rows may have named several partitions: count the survivors
                self.part_rows = _summed(_rows_by_partition(self.data, spec.partition_by).compute())
        self.lo = {k: _stat_value(v) for k, v in lo.items()}
        self.hi = {k: _stat_value(v) for k, v in hi.items()}
        self.part_values = {k: set(partition_string(v) for v in values.tolist())
                            for k, values in zip(part_keys, part_values)}

    def could_hold(self, ref: FileRef, stats: dict) -> bool:
        """Whether a table file may hold one of the batch's keys."""
        pv = dict(ref.partition_values)
        if any(pv.get(k) not in vals for k, vals in self.part_values.items()):
            return False
        return _overlaps(stats, self.lo, self.hi)

    def by_partition(self, snap: Snapshot) -> dict | None:
        """The live files of each table partition the batch touches, if the batch may skip locating
        their keys (None if not): the table is partitioned, and each of these partitions gets at
        least :data:`FUSE_ROWS_PER_FILE` batch rows per file in it, so every file is likely
        rewritten anyway, or is small (:data:`SMALL_PARTITION_ROWS`). A batch streamed through a
        shuffle is always located first.

        Examples
        --------
        >>> import types
        >>> f = lambda path, m: FileRef(path, (("m", m),), 10, 100_000)
        >>> snap = types.SimpleNamespace(files={"a": f("a", "1"), "b": f("b", "1"), "c": f("c", "2")})
        >>> stager = types.SimpleNamespace(spec=types.SimpleNamespace(partition_by=("m",)), in_memory=True,
        ...                                rows=2000, part_rows={'{"m": "1"}': 1000, '{"m": "3"}': 1000})
        >>> [(p, [r.path for r in refs]) for p, refs in MergeStager.by_partition(stager, snap).items()]
        [('{"m": "1"}', ['a', 'b'])]
        >>> stager.part_rows['{"m": "1"}'] = 999  # under 500 rows per file
        >>> MergeStager.by_partition(stager, snap) is None
        True
        >>> snap.files["b"] = FileRef("b", (("m", "1"),), 10, 50)  # unless the partition is small
        >>> snap.files["a"] = FileRef("a", (("m", "1"),), 10, 50)
        >>> list(MergeStager.by_partition(stager, snap))
        ['{"m": "1"}']
        """
        if not self.spec.partition_by or not self.part_rows or (self.rows > BROADCAST_ROWS and not self.in_memory):
            return None
        parts: dict = {}
        for ref in snap.files.values():
            name = _partition_name(ref)
            if self.part_rows.get(name, 0) > 0:
                parts.setdefault(name, []).append(ref)
        def dense(name: str, refs: list) -> bool:
            if self.part_rows[name] >= FUSE_ROWS_PER_FILE * len(refs):
                return True
            return all(r.num_records is not None for r in refs) and sum(
                r.num_records for r in refs) <= SMALL_PARTITION_ROWS

        if not parts or not all(dense(name, refs) for name, refs in parts.items()):
            return None
        return parts

    def stage(self, snap: Snapshot) -> Staged:
        """Stage the batch against ``snap``: grouped by partition where it is dense
        (:meth:`by_partition`), else by located keys; a partition grouping that meets a key which
        moved partition is undone and the batch located instead."""
        # one graph node for the batch's keys, named by content: runs sharing a client never collide.
        # What a try scatters is held until both tries are done: the second may scatter equal content
        # under the same name, which must not race the release of the first.
        hashes = _shared(self.hashes)
        held: list = []
        parts = self.by_partition(snap)
        if parts is not None:
            staged = self._stage(snap, parts, hashes, held)
            if staged is not None:
                return staged
        return self._stage(snap, None, hashes, held)

    def _stage(self, snap: Snapshot, parts: dict | None, hashes, held: list) -> Staged | None:
        spec = self.spec
        t0 = time.perf_counter()
        candidates = [ref for p, ref in snap.files.items() if self.could_hold(ref, snap.stats.get(p, {}))]
        if parts is None:
            chunks = _chunks(candidates, LOCATE_TASKS)
            located = dask.compute(*[dask.delayed(_locate)(spec, c, hashes) for c in chunks])
            found = [h for part, _ in located for h in part]
            groups = _union_groups([(ref, h) for ref, h in zip(candidates, found) if len(h)])
        else:  # grouped by partition; the other partitions' files are located alongside the apply tasks
            others = [ref for ref in candidates if _partition_name(ref) not in parts]
            locates = [dask.delayed(_locate)(spec, c, hashes) for c in _chunks(others, LOCATE_TASKS)]
            groups = [(refs, None) for refs in parts.values()]
            by_load = np.argsort([-sum(r.num_records or 0 for r in refs) for refs, _ in groups], kind="stable")
            with dask.annotate(priority=MAX_APPLY_TASKS + 1):  # before any apply task starts reading
                ahead = dask.delayed(_read_ahead)(spec, [r for g in by_load.tolist() for r in groups[g][0]])
        t1 = time.perf_counter()
        routes = pd.Series(np.repeat(np.arange(len(groups), dtype="float64"), [len(hs) for _, hs in groups]),
                           index=pd.Index(np.concatenate([hs for _, hs in groups]) if groups
                                          else np.zeros(0, np.uint64))) if parts is None else \
            pd.Series([], dtype="float64", index=pd.Index(np.zeros(0, np.uint64)))
        new_groups = max(1, min(64, max(self.data.npartitions, self.rows // 200_000)))  # balance big loads
        group_files = {gid: refs for gid, (refs, _) in enumerate(groups)}
        part_groups = {}
        for gid, (refs, _) in enumerate(groups):
            for ref in refs:
                part_groups.setdefault(_partition_name(ref), gid)
        total = len(groups) + new_groups
        nparts = max(1, min(total, MAX_APPLY_TASKS))
        costs = np.array([sum(r.num_records or 0 for r in refs) for refs, _ in groups] + [0] * new_groups)
        bins = _bins(costs + 1, nparts)
        route_args = (_shared(routes), self.repeated, part_groups, len(groups), new_groups,
                      tuple(spec.partition_by))
        files = _shared(group_files)
        held += [files, route_args[0]]
        first = _heaviest_first(costs + 1, bins, nparts)
        check = hashes if parts is not None else None
        if self.rows <= BROADCAST_ROWS:  # every worker gets the routed batch once; no shuffle
            splits = [dask.delayed(_split)(part, spec.schema, nparts, *route_args, bins)
                      for part in self.data.to_delayed()]
            tasks = first(lambda b: dask.delayed(_apply_bin)(spec, files, check, b, *splits))
        elif self.in_memory:  # each task fetches its slice of every routed partition, in memory
            splits = [dask.delayed(_split)(part, spec.schema, nparts, *route_args, bins)
                      for part in self.data.to_delayed()]
            tasks = first(lambda b: dask.delayed(_apply_pieces)(
                spec, files, check, *[dask.delayed(_piece)(sp, b) for sp in splits]))
        else:  # too large for memory: a p2p shuffle, through disk
            meta = self.data._meta.assign(**{GROUP_COL: pd.Series([], dtype="int64"),
                                             BIN_COL: pd.Series([], dtype="int64")})
            routed = self.data.map_partitions(_route, *route_args, _bin_labels(nparts)[bins], meta=meta)
            shuffled = routed.shuffle(on=BIN_COL, npartitions=nparts, shuffle_method="p2p").to_delayed()
            tasks = first(lambda b: dask.delayed(_apply_frame)(spec, files, shuffled[b]))
        if parts is None:
            results = dask.compute(*tasks)
        else:
            *results, read_ahead = dask.compute(*tasks, *locates, ahead)
            results, located = results[:len(tasks)], results[len(tasks):]
            moved = sum(r.foreign for r in results) + sum(len(h) for part, _ in located for h in part)
            if moved:
                undo = Staged([a for r in results for a in r.adds], [], snap)
                discard(spec.root, undo, snap.paths)
                log.info("MERGE: %d table row(s) hold a batch key under another partition; "
                         "locating the batch's keys instead of grouping it by partition", moved)
                return None
        adds, removes, counts, fingerprint = _combine(results)
        counts["files_scanned"] = len(candidates) if parts is None else len(others) + len(
            [r for refs in parts.values() for r in refs])
        counts["rows_in"] += self.dropped
        counts["duplicates_dropped"] += self.dropped
        timings = {"locate_seconds": round(t1 - t0, 3), "apply_seconds": round(time.perf_counter() - t1, 3),
                   "table_bytes_read": int(sum(ref.size for refs in group_files.values() for ref in refs)),
                   "table_bytes_prefetched": int(sum(asked for _, asked in located)) + (
                       read_ahead if parts is not None else 0),
                   "merge_groups": "by located key" if parts is None else "by partition"}
        return Staged(adds, removes, snap, counts, depends_on=self.could_hold, timings=timings,
                      fingerprint=fingerprint)

    def replan(self, staged: Staged, now: Snapshot) -> Staged:
        discard(self.spec.root, staged, now.paths)
        return self.stage(now)


def _partition_rows(df: pd.DataFrame, partition_by: tuple) -> pd.Series:
    """Rows of one batch partition per table partition, indexed by its Delta log form (JSON).

    Examples
    --------
    >>> _partition_rows(pd.DataFrame({"m": ["b", "a", "b"]}), ("m",)).to_dict()
    {'{"m": "b"}': 2, '{"m": "a"}': 1}
    """
    codes, names = _partition_codes(df, partition_by)
    return pd.Series(np.bincount(codes, minlength=len(names)), index=pd.Index(names, dtype=object), dtype="int64")


def _rows_by_partition(data: dd.DataFrame, partition_by: tuple) -> dd.Series:
    return data.map_partitions(_partition_rows, tuple(partition_by), meta=pd.Series([], dtype="int64"))


def _summed(counts: pd.Series) -> dict:
    """Per-partition row counts of all batch partitions (:func:`_partition_rows`) added up."""
    return counts.groupby(level=0).sum().to_dict()


def _partition_name(ref: FileRef) -> str:
    """A live file's table partition in the form :func:`_partition_codes` names a row's (JSON)."""
    return json.dumps(dict(ref.partition_values), sort_keys=True)


def _resolve_partition(df: pd.DataFrame, keys: tuple, order_by: str | None) -> pd.DataFrame:
    out, _ = resolve_duplicates(df.reset_index(drop=True), list(keys), order_by, hashes=df[HASH_COL].to_numpy())
    return out


def _deduplicated(data: dd.DataFrame, repeated: np.ndarray, spec: MergeSpec) -> dd.DataFrame:
    """``data`` with one row per key: the rows of repeated keys meet by key hash and are resolved."""
    is_dup = data[HASH_COL].isin(repeated)
    resolved = data[is_dup].shuffle(on=HASH_COL, shuffle_method=_shuffle_method(len(repeated) * 2)).map_partitions(_resolve_partition, tuple(spec.keys),
                                                                 spec.order_by, meta=data._meta)
    return dd.concat([data[~is_dup], resolved]).persist()


def _shared(obj):
    """``obj`` for many tasks: scattered once to every worker (named by content, so runs sharing a
    client never collide), or one graph node without a distributed client."""
    from etl.run.cluster import current_client

    client = current_client()
    if client is None:
        return dask.delayed(obj, traverse=False)
    return client.scatter([obj], broadcast=True, hash=True)[0]  # in a list: a dict is one object


def _stat_value(v):
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, pd.Timestamp):
        return None  # timestamps carry no exact file statistics; never prune on them
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def _union_groups(found: list) -> list:
    """Group files that share a key hash (a hash collision or a broken invariant) into one task.

    ``found`` holds ``(file, its batch key hashes)``; returns ``(files, distinct hashes)`` per
    group. Vectorized: only hashes held by more than one file cost a Python step.

    Examples
    --------
    >>> h = lambda *v: np.array(v, dtype=np.uint64)
    >>> [(refs, hs.tolist()) for refs, hs in _union_groups([("a", h(1, 2)), ("b", h(3)), ("c", h(2, 4))])]
    [(['a', 'c'], [1, 2, 4]), (['b'], [3])]
    >>> [(refs, hs.tolist()) for refs, hs in _union_groups([("a", h(2, 1, 2)), ("b", h(3))])]  # nothing shared
    [(['a'], [1, 2]), (['b'], [3])]
    """
    parent = list(range(len(found)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    hashes = np.concatenate([hs for _, hs in found]) if found else np.zeros(0, np.uint64)
    ascending = np.sort(hashes)
    if not (ascending[1:] == ascending[:-1]).any():  # the usual case: no hash in two files
        return [([ref], hs if bool((hs[1:] > hs[:-1]).all()) else np.unique(hs)) for ref, hs in found]
    owner = np.repeat(np.arange(len(found)), [len(hs) for _, hs in found])
    order = np.argsort(hashes, kind="stable")
    hashes, owner = hashes[order], owner[order]
    shared = np.flatnonzero(hashes[1:] == hashes[:-1])  # positions i where hash i+1 repeats hash i
    for i in shared.tolist():
        a, b = root(int(owner[i])), root(int(owner[i + 1]))
        if a != b:
            parent[b] = a
    roots = np.array([root(i) for i in range(len(found))], dtype=np.int64)
    groups: dict = {}
    for i, (ref, _) in enumerate(found):
        groups.setdefault(int(roots[i]), []).append(ref)
    group_of = roots[owner]
    by_group = np.argsort(group_of, kind="stable")
    starts = np.searchsorted(group_of[by_group], list(groups))
    ends = np.searchsorted(group_of[by_group], list(groups), side="right")
    return [(refs, np.unique(hashes[by_group[a:b]])) for refs, a, b in zip(groups.values(), starts, ends)]
