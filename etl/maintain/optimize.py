"""Compaction: rewrite many small files of a partition into few large ones (optionally Z-ordered).

Only ``dataChange=false`` rewrites are committed, so the table's content and
every run's exactly-once record are unchanged; a run in flight that read a
compacted file sees the concurrent commit and redoes its work on the new files.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from deltalake.exceptions import CommitFailedError, DeltaError

from etl.errors import CommitError, ConfigError
from etl.io.storage import Location
from etl.maintain.table import commit_properties, new_run_id, open_existing


@dataclass(frozen=True)
class OptimizeResult:
    """What a compaction did. ``version`` is None when there was nothing to compact (no commit)."""

    table: str
    run_id: str
    version_before: int
    version: int | None
    files_before: int
    files_after: int
    files_added: int
    files_removed: int
    z_order: tuple = ()
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        if self.version is None:
            return f"nothing to compact in {self.table}: {self.files_before} file(s), version {self.version_before}"
        how = f"z-ordered by {', '.join(self.z_order)}" if self.z_order else "compacted"
        return (f"{how} {self.table}: {self.files_before} -> {self.files_after} file(s) "
                f"({self.files_removed} removed, {self.files_added} added), version {self.version}, "
                f"run {self.run_id}, {self.seconds:.2f} s")


def optimize(loc: Location, *, z_order: list[str] | tuple = (), target_size_mb: float | None = None,
             run_id: str | None = None) -> OptimizeResult:
    """Compact the table's small files, one commit (``etl.operation = OPTIMIZE``).

    Parameters
    ----------
    loc : Location
        The table.
    z_order : list of str
        Columns to cluster by (Z-order) inside each partition; empty for plain compaction.
    target_size_mb : float, optional
        Target file size in MiB; default the table's ``delta.targetFileSize`` or delta-rs' (100 MiB).
    run_id : str, optional
        Recorded as ``etl.run_id``; a new one by default.
    """
    t0 = time.perf_counter()
    dt = open_existing(loc)
    z_order = tuple(z_order)
    _check_columns(dt, z_order, loc)
    if target_size_mb is not None and target_size_mb <= 0:
        raise ConfigError(f"--target-size {target_size_mb}: expected a size in MB above 0.")
    run_id = run_id or new_run_id()
    before, files_before = dt.version(), _file_count(dt)
    target = None if target_size_mb is None else int(target_size_mb * 1024 * 1024)
    props = commit_properties("OPTIMIZE", run_id, {"z_order": list(z_order), "target_size_mb": target_size_mb})
    try:
        if z_order:
            metrics = dt.optimize.z_order(list(z_order), target_size=target, commit_properties=props)
        else:
            metrics = dt.optimize.compact(target_size=target, commit_properties=props)
    except CommitFailedError as exc:
        raise CommitError(f"optimize of {loc} conflicted with a concurrent commit: {_msg(exc)}. The table is "
                          "unchanged; run it again.", table=str(loc)) from exc
    except DeltaError as exc:
        raise CommitError(f"optimize of {loc} failed: {_msg(exc)}. The table is unchanged.", table=str(loc)) from exc
    added, removed = int(metrics.get("numFilesAdded", 0)), int(metrics.get("numFilesRemoved", 0))
    return OptimizeResult(str(loc), run_id, before, dt.version() if added or removed else None, files_before,
                          _file_count(dt), added, removed, z_order, round(time.perf_counter() - t0, 3))


def _msg(exc: Exception) -> str:
    return str(exc).rstrip(". ")


def _file_count(dt) -> int:
    return dt.get_add_actions(flatten=True).num_rows


def _check_columns(dt, columns: tuple, loc: Location) -> None:
    names = [f.name for f in dt.schema().fields]
    parts = set(dt.metadata().partition_columns)
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise ConfigError(f"--z-order {', '.join(unknown)}: not a column of {loc}; its columns are "
                          f"{', '.join(names)}.", table=str(loc))
    partition = [c for c in columns if c in parts]
    if partition:
        raise ConfigError(f"--z-order {', '.join(partition)}: a partition column of {loc}; Z-order clusters rows "
                          "inside a partition, so pick non-partition columns (e.g. the merge keys).", table=str(loc))
