"""A table's commits, newest first: who (run, pipeline, code), what (operation, batch) and how many rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from etl.commit.lineage import read_lineage
from etl.io.storage import Location
from etl.maintain.table import open_existing


@dataclass(frozen=True)
class Commit:
    """One version of the table. The ``etl`` fields are None for commits not made by ``etl``."""

    version: int
    timestamp: str  # ISO 8601, UTC
    operation: str  # the Delta operation (WRITE, OPTIMIZE, VACUUM END, RESTORE ...)
    etl_operation: str | None = None  # MERGE, APPEND, OVERWRITE, OPTIMIZE, VACUUM, RESTORE
    run_id: str | None = None
    pipeline: str | None = None
    batch: str | None = None
    code_version: str | None = None
    rows: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # Delta's operationMetrics

    def to_dict(self) -> dict:
        return asdict(self)


def history(loc: Location, limit: int | None = None) -> list[Commit]:
    """The table's commits, newest first (at most ``limit``)."""
    return [to_commit(entry) for entry in open_existing(loc).history(limit)]


def to_commit(entry: dict) -> Commit:
    lin = read_lineage(entry)
    ts = datetime.fromtimestamp(entry.get("timestamp", 0) / 1000, timezone.utc)
    return Commit(
        version=int(entry["version"]), timestamp=ts.isoformat(timespec="seconds"),
        operation=str(entry.get("operation", "")), etl_operation=lin.get("operation"), run_id=lin.get("run_id"),
        pipeline=lin.get("pipeline"), batch=lin.get("batch"), code_version=lin.get("code_version"),
        rows=lin.get("rows") or {}, params=lin.get("params") or {},
        metrics={k: v for k, v in (entry.get("operationMetrics") or {}).items()})
