"""Restore: make an earlier version the table's current content, as a new recorded commit.

Restoring adds a version; it rewrites no history, so the versions in between
stay readable (until vacuumed) and the batches they committed stay recorded:
a rerun of such a batch is still skipped. Rerun it with ``--force`` to apply it again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from deltalake.exceptions import CommitFailedError, DeltaError

from etl.errors import CommitError, ConfigError
from etl.io.storage import Location
from etl.maintain.table import commit_properties, new_run_id, open_existing


@dataclass(frozen=True)
class RestoreResult:
    table: str
    run_id: str
    restored_version: int
    version_before: int
    version: int
    files_added: int
    files_removed: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"restored {self.table} to version {self.restored_version}: new version {self.version} "
                f"({self.files_removed} file(s) removed, {self.files_added} re-added), run {self.run_id}")


def restore(loc: Location, version: int, *, run_id: str | None = None) -> RestoreResult:
    """Restore ``loc`` to ``version`` in one commit (``etl.operation = RESTORE``).

    Raises
    ------
    ConfigError
        ``version`` is not an earlier version of the table.
    CommitError
        The restore could not be committed (e.g. that version's files were vacuumed).
    """
    dt = open_existing(loc)
    current = dt.version()
    if not 0 <= version < current:
        raise ConfigError(f"--version {version}: expected an earlier version of {loc}, from 0 to {current - 1} "
                          f"(the current version is {current}; see 'etl history').", table=str(loc))
    run_id = run_id or new_run_id()
    props = commit_properties("RESTORE", run_id, {"version": version, "from_version": current})
    try:
        metrics = dt.restore(version, commit_properties=props)
    except (CommitFailedError, DeltaError) as exc:
        raise CommitError(f"restore of {loc} to version {version} failed: {str(exc).rstrip('. ')}. The table "
                          "is unchanged. If files of that version were vacuumed it cannot be restored.",
                          table=str(loc)) from exc
    return RestoreResult(str(loc), run_id, version, current, dt.version(),
                         int(metrics.get("numRestoredFile", 0)), int(metrics.get("numRemovedFile", 0)))
