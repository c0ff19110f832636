"""The quarantine table: rows a contract set aside, with why, where from and their raw values.

One Delta table per warehouse, ``<warehouse>/_etl_quarantine``, partitioned by
pipeline. :func:`quarantine_table` builds a batch's rows (pure);
:func:`write_quarantine` appends them exactly once per app id: it commits with
the Delta app transaction ``etl:quarantine:<app_id>`` and skips when that
transaction is already in the table (so a rerun of the batch adds nothing).

Commit the quarantine *before* the batch's data commit, under the batch's own
app id: if the data commit then fails, the rerun finds the quarantine already
written and skips it; the reverse order could lose the rows on a crash.

A source file that does not parse, under ``on_malformed="quarantine"``, is one
record of its own (:func:`malformed_frame`): check ``malformed_file``, the
file's path, null row and column, the parser's error as the reason, and the
file, format, size and error as the raw value.

Examples
--------
>>> import tempfile, pandas as pd
>>> from datetime import datetime, timezone
>>> from etl.contracts import Check, Contract, evaluate
>>> _, bad, _ = evaluate(Contract([Check.not_null("id", action="quarantine")]),
...                      pd.DataFrame({"id": [1.0, None]}))
>>> t = quarantine_table([bad], run_id="r1", pipeline="p", batch="2026-01-01",
...                      at=datetime(2026, 1, 2, tzinfo=timezone.utc))
>>> t.num_rows, t.column("reason").to_pylist()
(1, ['id is null'])
>>> url = tempfile.mkdtemp()
>>> first = write_quarantine(url, t, app_id="etl:p:2026-01-01:ab")
>>> again = write_quarantine(url, t, app_id="etl:p:2026-01-01:ab")
>>> (first.written, again.written, again.version == first.version)
(True, False, True)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping

import pandas as pd
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from etl.contracts.evaluation import QUARANTINE_COLUMNS
from etl.errors import CommitError, ConflictError
from etl.io.storage import Location

log = logging.getLogger("etl.contracts")

QUARANTINE_DIR = "_etl_quarantine"
MALFORMED_FILE = "malformed_file"
TXN_PREFIX = "etl:quarantine:"
_TS = pa.timestamp("us", tz="UTC")
QUARANTINE_SCHEMA = pa.schema([
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("pipeline", pa.string(), nullable=False),
    pa.field("batch", pa.string(), nullable=False),
    pa.field("source_file", pa.string()),
    pa.field("row", pa.int64()),
    pa.field("check", pa.string(), nullable=False),
    pa.field("column", pa.string()),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("raw", pa.string(), nullable=False),
    pa.field("quarantined_at", _TS, nullable=False),
])


@dataclass(frozen=True)
class QuarantineWrite:
    """What :func:`write_quarantine` did: ``written`` now, or found already there (``version`` of that commit)."""

    written: bool
    version: int | None
    rows: int


def quarantine_url(warehouse: str) -> str:
    """The quarantine table of a warehouse."""
    return Location(warehouse).join(QUARANTINE_DIR).url


def quarantine_table(frames: pd.DataFrame | Iterable[pd.DataFrame], *, run_id: str, pipeline: str, batch: str,
                     at: datetime) -> pa.Table:
    """The quarantine rows of a batch as an Arrow table of :data:`QUARANTINE_SCHEMA`.

    Parameters
    ----------
    frames : DataFrame or iterable of DataFrame
        The ``quarantined`` frames :func:`etl.contracts.evaluate` returned.
    run_id, pipeline, batch : str
    at : datetime
        When the batch was checked (aware, UTC); the same for every row.
    """
    parts = [frames] if isinstance(frames, pd.DataFrame) else list(frames)
    parts = [p for p in parts if len(p)]
    n = sum(len(p) for p in parts)
    body = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(QUARANTINE_COLUMNS))
    columns = {
        "run_id": pa.array([run_id] * n, pa.string()),
        "pipeline": pa.array([pipeline] * n, pa.string()),
        "batch": pa.array([batch] * n, pa.string()),
        "quarantined_at": pa.array([at] * n, _TS),
    }
    for name in QUARANTINE_COLUMNS:
        typ = QUARANTINE_SCHEMA.field(name).type
        columns[name] = pa.array(body[name].astype(object).where(body[name].notna(), None).tolist(), typ)
    return pa.Table.from_pydict({f.name: columns[f.name] for f in QUARANTINE_SCHEMA}, schema=QUARANTINE_SCHEMA)


def malformed_frame(files: Iterable) -> pd.DataFrame:
    """One quarantine row per source file set aside whole, for :func:`quarantine_table`.

    Parameters
    ----------
    files : iterable of etl.io.sources.MalformedFile
        Anything with ``shown`` (the path without credentials), ``format``,
        ``size``, ``error`` and ``message`` (already masked).

    Examples
    --------
    >>> from types import SimpleNamespace as F
    >>> f = malformed_frame([F(shown="/in/a.csv", format="csv", size=10, error="ParserError", message="EOF")])
    >>> f[["source_file", "check", "reason"]].values.tolist()
    [['/in/a.csv', 'malformed_file', 'malformed csv file: ParserError: EOF']]
    >>> bool(f["row"].isna().all()), json.loads(f["raw"][0])["bytes"]
    (True, 10)
    """
    files = list(files)
    return pd.DataFrame({
        "source_file": pd.Series([f.shown for f in files], dtype="string"),
        "row": pd.Series([None] * len(files), dtype="Int64"),
        "check": pd.Series([MALFORMED_FILE] * len(files), dtype="string"),
        "column": pd.Series([None] * len(files), dtype="string"),
        "reason": pd.Series([f"malformed {f.format} file: {f.error}: {f.message}" for f in files], dtype="string"),
        "raw": pd.Series([json.dumps({"file": f.shown, "format": f.format, "bytes": int(f.size), "error": f.error,
                                      "message": f.message}, ensure_ascii=False) for f in files], dtype="string"),
    }, columns=list(QUARANTINE_COLUMNS))


def write_quarantine(url: str, table: pa.Table, app_id: str, storage_options: Mapping | None = None, *,
                     max_attempts: int = 8) -> QuarantineWrite:
    """Append ``table`` to the quarantine table at ``url`` exactly once for ``app_id``.

    Follows the Delta protocol's recipe (delta-rs does not enforce it): load,
    skip if ``transaction_version("etl:quarantine:<app_id>")`` is set (0 is a
    real version), else commit with that transaction and no automatic
    retries; on a conflict, reload and check again.

    Raises
    ------
    ConflictError
        Still conflicting after ``max_attempts``; nothing was written.
    CommitError
        The store refused the write.
    """
    if table.num_rows == 0:
        return QuarantineWrite(False, None, 0)
    loc, txn = Location(url, storage_options), TXN_PREFIX + app_id
    for attempt in range(max_attempts):
        dt = _ensure(loc)
        if dt.transaction_version(txn) is not None:
            log.info("quarantine of %s already written; skipping", app_id)
            return QuarantineWrite(False, _version_with(dt, txn), table.num_rows)
        props = CommitProperties(custom_metadata={"etl.quarantine_app_id": txn}, max_commit_retries=0,
                                 app_transactions=[Transaction(txn, 0, int(time.time() * 1000))])
        try:
            write_deltalake(dt, table, mode="append", partition_by=["pipeline"], commit_properties=props)
        except CommitFailedError as exc:
            log.warning("quarantine commit attempt %d conflicted (%s); checking again", attempt + 1,
                        str(exc).splitlines()[0][:200])
            continue
        except (DeltaError, OSError) as exc:
            raise CommitError(f"quarantine table {loc}: writing {table.num_rows} row(s) of {app_id} failed: "
                              f"{type(exc).__name__}: {exc}. Nothing of the batch was committed; rerun it.",
                              table=str(loc)) from exc
        return QuarantineWrite(True, _version_with(_open(loc), txn), table.num_rows)
    raise ConflictError(f"quarantine table {loc}: the append of {app_id} kept conflicting after {max_attempts} "
                        "attempts; nothing was written. Rerun the batch.", table=str(loc), app_id=app_id)


def _open(loc: Location) -> DeltaTable:
    return DeltaTable(loc.url, storage_options=loc.delta_options)


def _ensure(loc: Location) -> DeltaTable:
    try:
        return _open(loc)
    except TableNotFoundError:
        pass
    try:
        DeltaTable.create(loc.url, QUARANTINE_SCHEMA, mode="ignore", partition_by=["pipeline"],
                          storage_options=loc.delta_options)
    except CommitFailedError:
        pass  # created by a concurrent run
    return _open(loc)


def _version_with(dt: DeltaTable, txn: str) -> int | None:
    for entry in dt.history():
        if entry.get("etl.quarantine_app_id") == txn:
            return int(entry["version"])
    return None
