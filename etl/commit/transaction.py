"""The exactly-once commit: one Delta transaction per batch, checked against its app transaction.

Protocol (delta-rs does not enforce idempotency itself):

1. Reload the table. If the batch's ``txn`` app id is already there, the batch
   is committed: drop our staged files unless they are the live ones (a commit
   that landed while we saw an error), and stop.
2. If the table moved since the snapshot the work was planned on and a
   concurrent commit touched what this batch read, redo the work on the new
   snapshot (``replan``) and drop the old staged files.
3. Commit adds, removes and the ``txn`` in ONE transaction, with delta-rs's own
   retries off, so any race comes back to step 1.
4. On a conflict or an I/O error, wait (exponential backoff, full jitter) and
   go to 1; give up after the policy's attempts with :class:`ConflictError`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, RemoveAction

from etl.commit.table import Snapshot, snapshot
from etl.errors import ConflictError
from etl.io.storage import Location
from etl.policy.retry import RetryPolicy

log = logging.getLogger("etl.commit")


@dataclass
class Staged:
    """Files a run staged for one commit, what they depend on, and how they change the table's content.

    ``depends_on(file_ref, stats)`` says whether a file added concurrently could
    change this work (e.g. it may hold one of the batch's keys).
    """

    adds: list
    removes: list
    snapshot: Snapshot
    counts: dict = field(default_factory=dict)
    depends_on: Callable[[object, dict], bool] = lambda ref, stats: False
    timings: dict = field(default_factory=dict)
    #: How committing changes the table's content fingerprint (rows added minus rows removed, mod 2**64).
    fingerprint: int | None = None
    #: The rows added alone (an overwrite's replan recounts only what it removes).
    added_fingerprint: int = 0

    def invalidated_by(self, now: Snapshot) -> bool:
        if now.version == self.snapshot.version:
            return False
        if any(r["path"] not in now.files for r in self.removes):
            return True
        added = now.paths - self.snapshot.paths
        return any(self.depends_on(now.files[p], now.stats.get(p, {})) for p in added)


@dataclass(frozen=True)
class Outcome:
    """How the commit ended: ``committed`` at ``version``, or ``skipped`` (already committed)."""

    committed: bool
    version: int
    attempts: int
    staged: Staged | None = None
    recomputed: int = 0


def _actions(staged: Staged) -> list:
    now = int(time.time() * 1000)
    adds = [AddAction(a["path"], int(a["size"]), json.loads(a["partition_values"]), int(a["modification_time"]),
                      True, a["stats"]) for a in staged.adds]
    removes = [RemoveAction(r["path"], True, now, int(r["size"]) or None, json.loads(r["partition_values"]))
               for r in staged.removes]
    return adds + removes


def discard(root: Location, staged: Staged, live: frozenset) -> int:
    """Delete staged files that no commit references. Returns how many were deleted."""
    fs, n = root.fs, 0
    for a in staged.adds:
        if a["path"] in live:
            continue
        try:
            fs.rm_file(f"{root.path}/{a['path']}")
            n += 1
        except FileNotFoundError:
            pass
    return n


def version_with_txn(root: Location, dt: DeltaTable, app_id: str, depth: int = 50) -> int:
    """The table version whose commit carries ``app_id``'s txn (searched from ``dt``'s version down).

    Reads the commit files: ``DeltaTable.history()`` (deltalake 1.6.6) numbers the newest commits
    from the *loaded* version, so a commit landing after the load shifts every number.
    """
    fs, log_dir = root.fs, f"{root.path}/_delta_log"
    for version in range(dt.version(), max(-1, dt.version() - depth), -1):
        try:
            text = fs.cat_file(f"{log_dir}/{version:020d}.json").decode()
        except FileNotFoundError:
            break
        for line in text.splitlines():
            if app_id in line and json.loads(line).get("txn", {}).get("appId") == app_id:
                return version
    return dt.version()


def commit_info(root: Location, version: int) -> dict:
    """The ``commitInfo`` of one table version, with etl's lineage at its top level ({} if unreadable)."""
    try:
        text = root.fs.cat_file(f"{root.path}/_delta_log/{version:020d}.json").decode()
    except (FileNotFoundError, OSError):
        return {}
    for line in text.splitlines():
        if '"commitInfo"' in line:
            return json.loads(line).get("commitInfo", {})
    return {}


def commit(root: Location, schema: pa.Schema, partition_by: list[str], app_id: str,
           metadata: dict | Callable[[Staged], dict],
           staged: Staged, replan: Callable[[Staged, Snapshot], Staged], policy: RetryPolicy,
           key_columns: list[str] = (), rng: random.Random | None = None,
           sleep: Callable[[float], None] = time.sleep,
           hook: Callable[[str], None] | None = None) -> Outcome:
    """Commit ``staged`` exactly once under ``app_id``; see the module docstring.

    ``metadata`` may be a function of the staged work, so that a commit redone
    after a conflict records the counts of what it finally commits.
    ``hook(point)`` is called at named points (``before_commit``, ``after_commit``)
    so that tests can inject faults there.
    """
    recomputed = 0
    for attempt in range(policy.max_attempts):
        dt = DeltaTable(root.url, storage_options=root.delta_options)
        now = snapshot(dt, list(key_columns))
        if dt.transaction_version(app_id) is not None:
            ours = bool(staged.adds) and all(a["path"] in now.files for a in staged.adds)
            if not ours:
                discard(root, staged, now.paths)
            return Outcome(ours, version_with_txn(root, dt, app_id), attempt + 1, staged, recomputed)
        if staged.invalidated_by(now):
            log.info("table moved to version %s and touched this batch's files; recomputing", now.version)
            staged = replan(staged, now)
            recomputed += 1
        props = CommitProperties(custom_metadata=metadata(staged) if callable(metadata) else metadata,
                                 max_commit_retries=0,
                                 app_transactions=[Transaction(app_id, 0, int(time.time() * 1000))])
        try:
            if hook:
                hook("before_commit")
            dt.create_write_transaction(_actions(staged), mode="append", schema=schema,
                                        partition_by=list(partition_by) or None, commit_properties=props)
            if hook:
                hook("after_commit")
            done = DeltaTable(root.url, storage_options=root.delta_options)
            return Outcome(True, version_with_txn(root, done, app_id), attempt + 1, staged, recomputed)
        except (CommitFailedError, OSError) as exc:
            wait = policy.delay(attempt, rng)
            log.warning("commit attempt %d failed (%s: %s); retrying in %.2fs", attempt + 1,
                        type(exc).__name__, str(exc).splitlines()[0][:200], wait)
            if not policy.gives_up_after(attempt):
                sleep(wait)
    dt = DeltaTable(root.url, storage_options=root.delta_options)
    if dt.transaction_version(app_id) is not None:  # the last attempt landed after all
        return Outcome(True, version_with_txn(root, dt, app_id), policy.max_attempts, staged, recomputed)
    discard(root, staged, snapshot(dt).paths)
    raise ConflictError(f"table {root}: the commit of {app_id} kept conflicting with concurrent writers after "
                        f"{policy.max_attempts} attempts; nothing was committed and the staged files were removed. "
                        "Rerun the same command; raise ETL_RETRY_MAX_ATTEMPTS if the table is very busy.",
                        table=str(root), app_id=app_id)
