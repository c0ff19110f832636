"""What ``etl verify`` checks: the ledger's account of a pipeline against its table. Pure.

For every attempt the ledger records as succeeded with a table version (a run
that committed nothing, every row unchanged, records ``version=None``), the
table's history must hold a commit at the recorded version, made by the same app transaction, with
the same row counts. Every etl commit of the pipeline in the history must be
known to the ledger. And when the ledger holds a content fingerprint for every
commit (the fingerprint *delta* of the commit: rows added minus rows removed,
mod 2**64, see :func:`etl.kernels.fingerprint`), their sum must equal the
fingerprint of the table's current rows. Commits that do not change content
(OPTIMIZE, VACUUM, CHECKPOINT ...) are ignored; other commits not made by etl
are reported, since they change content the ledger cannot account for. A column
added after fingerprinted commits makes the content check ``unverifiable``: the
rows committed before it were fingerprinted without the column.

Examples
--------
>>> from datetime import datetime, timezone
>>> from etl.ledger.states import BatchState
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> ok = BatchState("p", "2026-01-01", "succeeded", "succeeded", t, attempt=1, run_id="r1",
...                 app_id="etl:p:2026-01-01:ab", rows={"inserted": 2}, version=1, fingerprint="0000000000000007")
>>> history = [{"version": 0, "operation": "CREATE TABLE"},
...            {"version": 1, "operation": "WRITE", "etl.pipeline": "p", "etl.batch": "2026-01-01",
...             "etl.app_id": "etl:p:2026-01-01:ab", "etl.rows": '{"inserted": 2}'}]
>>> verify("p", [ok], history, table_fingerprint=7).ok
True
>>> report = verify("p", [ok], history, table_fingerprint=8)
>>> [(f.kind, f.batch) for f in report.errors]
[('fingerprint_mismatch', None)]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from etl.ledger.states import SUCCEEDED, BatchState

ERROR, WARNING = "error", "warning"
NEUTRAL_OPERATIONS = frozenset({"CREATE TABLE", "OPTIMIZE", "VACUUM START", "VACUUM END", "CHECKPOINT",
                                "SET TBLPROPERTIES", "ADD CONSTRAINT", "DROP CONSTRAINT", "ADD COLUMN",
                                "UPDATE TABLE METADATA", "ADD FEATURE"})
_MOD = 2 ** 64


@dataclass(frozen=True)
class Finding:
    """One difference between the ledger and the table."""

    kind: str
    severity: str
    message: str
    batch: str | None = None
    version: int | None = None
    expected: object = None
    found: object = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of ``etl verify``: ``ok`` when there is no error-level finding.

    Finding kinds: ``missing_commit``, ``wrong_commit``, ``rows_mismatch``,
    ``fingerprint_mismatch`` (errors); ``unrecorded_commit``,
    ``foreign_commit``, ``unverifiable`` (warnings).
    """

    pipeline: str
    checked: int
    findings: tuple = field(default_factory=tuple)
    expected_fingerprint: int | None = None
    table_fingerprint: int | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {"pipeline": self.pipeline, "ok": self.ok, "checked": self.checked,
                "expected_fingerprint": _hex(self.expected_fingerprint),
                "table_fingerprint": _hex(self.table_fingerprint),
                "findings": [f.to_dict() for f in self.findings]}

    def __str__(self) -> str:
        head = (f"{self.pipeline}: {'OK' if self.ok else 'MISMATCH'}, {self.checked} committed attempt(s) "
                f"checked, {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join([head, *(f"  {f.severity}: {f.message}" for f in self.findings)])


def verify(pipeline: str, ledger_history: Iterable[BatchState], table_history: Iterable[Mapping], *,
           table_fingerprint: int | None = None) -> VerifyReport:
    """Compare the ledger's record of ``pipeline`` with its table.

    Parameters
    ----------
    pipeline : str
        The pipeline name; other pipelines' rows and commits are ignored.
    ledger_history : iterable of BatchState
        Every ledger row of the pipeline (:meth:`etl.ledger.Ledger.history`),
        not only the current states: each succeeded attempt is checked.
    table_history : iterable of mapping
        ``DeltaTable.history()`` entries (``version``, ``operation`` and the
        ``etl.*`` commit metadata at the top level).
    table_fingerprint : int, optional
        :func:`etl.kernels.fingerprint` of the table's current rows over the
        columns the runner fingerprints; None skips the content check.
    """
    done = [s for s in ledger_history if s.pipeline == pipeline and s.state == SUCCEEDED]
    commits = {int(h["version"]): h for h in table_history if "version" in h}
    oldest = min(commits) if commits else None
    findings = [f for s in done for f in _check_attempt(s, commits, oldest)]
    findings += _unaccounted(pipeline, done, commits)
    expected, more = _expected_fingerprint(done, table_fingerprint, commits)
    findings += more
    return VerifyReport(pipeline, len(done), tuple(findings), expected, table_fingerprint)


def _check_attempt(s: BatchState, commits: dict, oldest: int | None) -> list[Finding]:
    if s.version is None:  # the run committed nothing (every row unchanged)
        return []
    entry = commits.get(s.version)
    if entry is None:
        if oldest is not None and s.version < oldest:
            return [Finding("unverifiable", WARNING, f"batch {s.batch}: version {s.version} is older than the "
                            f"table's retained history (from {oldest}); cannot check it.", s.batch, s.version)]
        return [Finding("missing_commit", ERROR, f"batch {s.batch}: the ledger says run {s.run_id} committed "
                        f"version {s.version}, but the table has no such version. The table was restored or "
                        "replaced; rerun the batch with --reprocess all.", s.batch, s.version)]
    if s.app_id and entry.get("etl.app_id") != s.app_id:
        return [Finding("wrong_commit", ERROR, f"batch {s.batch}: version {s.version} should carry app id "
                        f"{s.app_id}, found {entry.get('etl.app_id')!r} ({entry.get('operation')}). The ledger "
                        "and the table disagree on who wrote it; rerun the batch with --reprocess all.",
                        s.batch, s.version, s.app_id, entry.get("etl.app_id"))]
    return _check_rows(s, entry)


def _check_rows(s: BatchState, entry: Mapping) -> list[Finding]:
    try:
        table_rows = json.loads(entry.get("etl.rows") or "{}")
    except ValueError:
        table_rows = {}
    common = sorted(set(s.rows) & set(table_rows))
    diff = {k: (s.rows[k], table_rows[k]) for k in common if int(s.rows[k]) != int(table_rows[k])}
    if not diff:
        return []
    return [Finding("rows_mismatch", ERROR, f"batch {s.batch}: row counts of version {s.version} differ "
                    f"(ledger, table): {diff}. Check for a second writer; rerun the batch to repair.",
                    s.batch, s.version, {k: a for k, (a, _) in diff.items()}, {k: b for k, (_, b) in diff.items()})]


def _unaccounted(pipeline: str, done: list[BatchState], commits: dict) -> list[Finding]:
    known_versions = {s.version for s in done}
    known_apps = {s.app_id for s in done if s.app_id}
    out = []
    for version, entry in sorted(commits.items()):
        ours = entry.get("etl.pipeline") == pipeline
        if ours and version not in known_versions and entry.get("etl.app_id") not in known_apps:
            out.append(Finding("unrecorded_commit", WARNING, f"version {version} was committed by etl for batch "
                               f"{entry.get('etl.batch')} (run {entry.get('etl.run_id')}) but the ledger records "
                               "no success for it (its driver died after committing, or the commit predates the "
                               "ledger). Rerun the batch: the run finds its commit and records it.",
                               entry.get("etl.batch"), version))
        elif not any(k.startswith("etl.") for k in entry) and entry.get("operation") not in NEUTRAL_OPERATIONS:
            out.append(Finding("foreign_commit", WARNING, f"version {version} ({entry.get('operation')}) was not "
                               "made by etl; the content check cannot account for what it changed.",
                               None, version))
    return out


def _expected_fingerprint(done: list[BatchState], table_fp: int | None,
                          commits: Mapping[int, Mapping]) -> tuple[int | None, list[Finding]]:
    by_version: dict[int, str | None] = {}
    for s in done:  # a rerun that found its batch committed records the same version, maybe no fingerprint
        if s.version is not None and by_version.get(s.version) is None:
            by_version[s.version] = s.fingerprint
    if table_fp is None:
        return None, []
    missing = sorted(v for v, fp in by_version.items() if fp is None)
    if missing:
        return None, [Finding("unverifiable", WARNING, f"no content fingerprint recorded for version(s) "
                              f"{missing[:5]}; the table content was not checked.")]
    # A row's fingerprint covers every column of the table when it was committed: rows committed
    # before a column was added were fingerprinted without it, and now hash with a null there.
    added = [v for v, h in sorted(commits.items()) if h.get("operation") == "ADD COLUMN"
             and any(c < v for c in by_version)]
    if added:
        return None, [Finding("unverifiable", WARNING, f"version {added[-1]} added column(s) to the table after "
                              "rows were committed and fingerprinted without them; the content check cannot span "
                              "a column addition (commits and row counts were checked).", version=added[-1])]
    expected = sum(int(fp, 16) for fp in by_version.values()) % _MOD
    if expected == table_fp % _MOD:
        return expected, []
    return expected, [Finding("fingerprint_mismatch", ERROR, f"the table's rows fingerprint to "
                              f"{_hex(table_fp)}, the ledger's commits add up to {_hex(expected)}: rows were "
                              "changed outside the recorded commits (see foreign or unrecorded commits above), "
                              "or a commit's content differs from what was recorded.", expected=_hex(expected),
                              found=_hex(table_fp))]


def _hex(value: int | None) -> str | None:
    return None if value is None else f"{value % _MOD:016x}"


def fingerprint_delta(added: int, removed: int = 0) -> str:
    """The fingerprint a commit records: rows added minus rows removed, mod 2**64, as 16 hex digits.

    Examples
    --------
    >>> fingerprint_delta(10, 3)
    '0000000000000007'
    >>> fingerprint_delta(0, 1)
    'ffffffffffffffff'
    """
    return f"{(added - removed) % _MOD:016x}"
