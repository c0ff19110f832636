"""Evaluating a contract on one pandas partition, adding up the statistics, enforcing the budget. Pure.

:func:`evaluate` runs on the workers, once per partition: it splits the rows
into good ones and quarantined ones (with the check, column, reason and the raw
values as JSON, plus source file and row position when the reader added
``_etl_source_file`` / ``_etl_row``) and counts every check's violations. It
never raises for bad data: the driver adds the partitions' :class:`ContractStats`
up and calls :func:`enforce`, which fails the batch (before anything is
committed) on a ``fail`` check's violation or a quarantine beyond the budget.

Examples
--------
>>> import pandas as pd
>>> from etl.contracts import Check, Contract
>>> c = Contract([Check.not_null("id", action="quarantine"), Check.in_range("qty", 0, 100, action="warn")],
...              error_budget=1)
>>> df = pd.DataFrame({"id": [1.0, None, 3.0], "qty": [5, 7, 500]})
>>> good, bad, stats = evaluate(c, df)
>>> good["id"].tolist(), bad[["check", "reason", "raw"]].values.tolist()
([1.0, 3.0], [['not_null:id', 'id is null', '{"id": null, "qty": 7}']])
>>> stats.rows_quarantined, stats.check("in_range:qty").violations
(1, 1)
>>> enforce(c, stats + stats)
Traceback (most recent call last):
...
etl.errors.ContractError: contract: 2 of 6 rows quarantined (33.33%), over the error budget of 1 row(s) (not_null:id: 2); nothing was committed. Inspect the quarantine table, fix the source or the checks, or raise error_budget.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from etl.contracts.checks import FAIL, QUARANTINE, WARN, Check
from etl.contracts.contract import Contract
from etl.contracts.drift import ROW_COL, SOURCE_FILE_COL, apply_drift, detect_drift
from etl.errors import ContractError

QUARANTINE_COLUMNS = ("source_file", "row", "check", "column", "reason", "raw")
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class EvalContext:
    """What a partition's evaluation may know beyond its rows.

    Attributes
    ----------
    schema : pyarrow.Schema, optional
        The declared schema; when given, schema drift is handled first under
        the contract's ``schema_drift`` policy.
    duplicate_keys : frozenset of int, optional
        Key hashes (:func:`etl.kernels.hash_rows` of a ``unique`` check's
        columns) held by more than one row anywhere in the batch, for
        batch-wide uniqueness; see :func:`duplicate_hashes`.
    extra_columns : tuple of str
        Columns allowed beside the schema (the target's ``delete_when`` flag).
    """

    schema: pa.Schema | None = None
    duplicate_keys: frozenset | None = None
    extra_columns: tuple = ()


@dataclass(frozen=True)
class CheckStats:
    """How many rows broke one check, with up to five examples (raw JSON)."""

    name: str
    column: str | None
    action: str
    violations: int = 0
    examples: tuple = ()

    def __add__(self, other: "CheckStats") -> "CheckStats":
        return CheckStats(self.name, self.column, self.action, self.violations + other.violations,
                          (self.examples + other.examples)[:MAX_EXAMPLES])


@dataclass(frozen=True)
class ContractStats:
    """The contract's figures for a partition or, added up, a batch.

    ``files_in`` and ``files_quarantined`` count the files of sources declared
    ``on_malformed="quarantine"`` and those set aside whole as malformed; the
    driver adds them (:func:`etl.io.sources.screen` found them before the read).
    """

    rows_in: int = 0
    rows_good: int = 0
    rows_quarantined: int = 0
    checks: tuple = ()
    new_columns: tuple = ()
    missing_columns: tuple = ()
    files_in: int = 0
    files_quarantined: int = 0

    def check(self, name: str) -> CheckStats:
        return next(c for c in self.checks if c.name == name)

    def __add__(self, other: "ContractStats") -> "ContractStats":
        merged = {c.name: c for c in self.checks}
        for c in other.checks:
            merged[c.name] = merged[c.name] + c if c.name in merged else c
        return ContractStats(self.rows_in + other.rows_in, self.rows_good + other.rows_good,
                             self.rows_quarantined + other.rows_quarantined, tuple(merged.values()),
                             _union(self.new_columns, other.new_columns),
                             _union(self.missing_columns, other.missing_columns),
                             self.files_in + other.files_in, self.files_quarantined + other.files_quarantined)

    @property
    def failed(self) -> list[CheckStats]:
        return [c for c in self.checks if c.action == FAIL and c.violations]

    @property
    def warned(self) -> list[CheckStats]:
        return [c for c in self.checks if c.action == WARN and c.violations]

    def to_dict(self) -> dict:
        return {"rows_in": self.rows_in, "rows_good": self.rows_good, "rows_quarantined": self.rows_quarantined,
                "checks": {c.name: {"column": c.column, "action": c.action, "violations": c.violations}
                           for c in self.checks},
                "new_columns": list(self.new_columns), "missing_columns": list(self.missing_columns),
                "files_in": self.files_in, "files_quarantined": self.files_quarantined}


def merge_stats(stats: Iterable[ContractStats]) -> ContractStats:
    """The sum of partitions' statistics (the batch's)."""
    total = ContractStats()
    for s in stats:
        total = total + s
    return total


def duplicate_hashes(hashes: np.ndarray) -> frozenset:
    """The hashes that occur more than once: the batch's duplicated keys, for :class:`EvalContext`.

    Examples
    --------
    >>> sorted(duplicate_hashes(np.array([5, 1, 5, 2, 2, 2], dtype=np.uint64)))
    [2, 5]
    """
    values, counts = np.unique(np.asarray(hashes, dtype=np.uint64), return_counts=True)
    return frozenset(int(v) for v in values[counts > 1])


def evaluate(contract: Contract, df: pd.DataFrame,
             context: EvalContext | None = None) -> tuple[pd.DataFrame, pd.DataFrame, ContractStats]:
    """Split one partition into good rows and quarantined rows, and count every check.

    Parameters
    ----------
    contract : Contract
    df : pandas.DataFrame
        A partition of the transform's output; may hold ``_etl_source_file``
        and ``_etl_row`` (dropped from the good rows, kept in quarantine).
    context : EvalContext, optional

    Returns
    -------
    good : pandas.DataFrame
        The rows no quarantine check caught (``fail`` and ``warn`` rows stay),
        without the provenance columns.
    quarantined : pandas.DataFrame
        One row per quarantined input row: ``source_file``, ``row``, ``check``
        (the first quarantine check it broke), ``column``, ``reason`` (every
        quarantine check it broke) and ``raw`` (its values as a JSON object).
    stats : ContractStats

    Raises
    ------
    SchemaError
        Schema drift the policy refuses, or a check's column is missing.
    ConfigError
        A check cannot be applied (a row predicate raised ...).
    """
    context = context or EvalContext()
    drift = ((), ())
    if context.schema is not None:
        found = detect_drift(context.schema, df, context.extra_columns)
        drift = (found.new, found.missing)
        df = apply_drift(df, context.schema, contract.schema_drift, context.extra_columns)
    provenance = [c for c in (SOURCE_FILE_COL, ROW_COL) if c in df.columns]
    data = df.drop(columns=provenance) if provenance else df
    masks, stats = [], []
    for check in contract.checks:
        bad = check.violations(data, context.duplicate_keys)
        examples = data.iloc[np.flatnonzero(bad)[:MAX_EXAMPLES]]
        stats.append(CheckStats(check.name, check.column, check.action, int(bad.sum()), tuple(raw_json(examples))))
        if check.action == QUARANTINE:
            masks.append((check, bad))
    caught = np.zeros(len(data), dtype=bool)
    for _, bad in masks:
        caught |= bad
    quarantined = _quarantine_frame(df, data, masks, caught)
    total = ContractStats(len(data), int((~caught).sum()), int(caught.sum()), tuple(stats), *drift)
    return (data[~caught] if caught.any() else data), quarantined, total


def _quarantine_frame(df: pd.DataFrame, data: pd.DataFrame, masks: list, caught: np.ndarray) -> pd.DataFrame:
    n = int(caught.sum())
    first_check: list = [None] * n
    first_column: list = [None] * n
    reasons: list = [[] for _ in range(n)]
    where = np.flatnonzero(caught)
    slot = {int(p): i for i, p in enumerate(where)}
    for check, bad in masks:
        positions = np.flatnonzero(bad)
        for p, text in zip(positions, check.reason(data.iloc[positions])):
            i = slot[int(p)]
            if first_check[i] is None:
                first_check[i], first_column[i] = check.name, check.column
            reasons[i].append(text)
    rows = df.iloc[where]
    source = rows[SOURCE_FILE_COL].astype(object).tolist() if SOURCE_FILE_COL in df.columns else [None] * n
    position = rows[ROW_COL].tolist() if ROW_COL in df.columns else [None] * n
    return pd.DataFrame({
        "source_file": pd.Series(source, dtype="string"),
        "row": pd.Series(position, dtype="Int64"),
        "check": pd.Series(first_check, dtype="string"),
        "column": pd.Series(first_column, dtype="string"),
        "reason": pd.Series(["; ".join(r) for r in reasons], dtype="string"),
        "raw": pd.Series(raw_json(data.iloc[where]), dtype="string"),
    }, columns=list(QUARANTINE_COLUMNS))


def raw_json(frame: pd.DataFrame) -> list[str]:
    """Each row of ``frame`` as a JSON object string (nulls as null, dates and times in ISO 8601).

    Examples
    --------
    >>> raw_json(pd.DataFrame({"a": [1.5, float("nan")], "t": pd.to_datetime(["2026-01-02", None])}))
    ['{"a": 1.5, "t": "2026-01-02T00:00:00"}', '{"a": null, "t": null}']
    """
    return [json.dumps({str(k): _plain(v) for k, v in rec.items()}, ensure_ascii=False, allow_nan=False)
            for rec in frame.to_dict("records")]


def _plain(v):
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if hasattr(v, "item") and not isinstance(v, (pd.Timestamp, pd.Timedelta)):
        v = v.item()
    if isinstance(v, float):
        return None if math.isnan(v) else (str(v) if math.isinf(v) else v)
    if isinstance(v, (pd.Timestamp, _dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return str(v)


# ------------------------------------------------------------ the batch's verdict

def over_budget(contract: Contract, stats: ContractStats) -> bool:
    """True when the batch quarantined more than the contract's error budget allows.

    A malformed file set aside whole is one quarantine record: against a count
    budget (``int``) rows and files add up; against a fraction, the share of
    rows and the share of files (of the sources declared
    ``on_malformed="quarantine"``) must each stay within it.

    Examples
    --------
    >>> from etl.contracts import Contract
    >>> over_budget(Contract(error_budget=2), ContractStats(rows_in=100, rows_quarantined=1, files_quarantined=1))
    False
    >>> over_budget(Contract(error_budget=2), ContractStats(rows_in=100, rows_quarantined=2, files_quarantined=1))
    True
    >>> over_budget(Contract(error_budget=0.5), ContractStats(rows_in=10, files_in=4, files_quarantined=2))
    False
    >>> over_budget(Contract(error_budget=0.1), ContractStats(rows_in=10, files_in=4, files_quarantined=1))
    True
    """
    limit = contract.budget_limit(stats.rows_in)
    if limit is None:
        return False
    if isinstance(contract.error_budget, float):
        return stats.rows_quarantined > limit or stats.files_quarantined > contract.budget_limit(stats.files_in)
    return stats.rows_quarantined + stats.files_quarantined > limit


def enforce(contract: Contract, stats: ContractStats) -> None:
    """Fail the batch if a ``fail`` check was broken or the quarantine exceeds the budget.

    Call it on the driver with the batch's :func:`merge_stats`, before committing.

    Raises
    ------
    ContractError
        Naming the check, column, count and examples, or the budget and counts.
    """
    for c in stats.failed:
        raise ContractError(
            f"contract check {c.name!r} (column {c.column or '(row)'}, action 'fail') failed on {c.violations} of "
            f"{stats.rows_in} rows, e.g. {list(c.examples[:3])}; nothing was committed. Fix the source data, or "
            "set action='quarantine' on the check to set such rows aside.", check=c.name, column=c.column,
            count=c.violations, examples=list(c.examples))
    if over_budget(contract, stats):
        limit = contract.budget_limit(stats.rows_in)
        share = 100.0 * stats.rows_quarantined / max(stats.rows_in, 1)
        per_check = ", ".join(f"{c.name}: {c.violations}" for c in stats.checks
                              if c.action == QUARANTINE and c.violations)
        files = ""
        if stats.files_quarantined:
            file_share = 100.0 * stats.files_quarantined / max(stats.files_in, 1)
            files = (f" and {stats.files_quarantined} of {stats.files_in} files set aside as malformed "
                     f"({file_share:.2f}%)")
            per_check = ", ".join(x for x in (per_check, f"malformed_file: {stats.files_quarantined}") if x)
        budget = (f"{contract.error_budget:.2%} of rows and of files ({limit} row(s), "
                  f"{contract.budget_limit(stats.files_in)} file(s))"
                  if files and isinstance(contract.error_budget, float) else
                  f"{limit} record(s), rows and files together" if files else f"{limit} row(s)")
        raise ContractError(
            f"contract: {stats.rows_quarantined} of {stats.rows_in} rows quarantined ({share:.2f}%){files}, over "
            f"the error budget of {budget} ({per_check}); nothing was committed. Inspect the quarantine "
            "table, fix the source or the checks, or raise error_budget.", quarantined=stats.rows_quarantined,
            rows_in=stats.rows_in, budget=limit, files_quarantined=stats.files_quarantined,
            files_in=stats.files_in)


def _union(a: tuple, b: tuple) -> tuple:
    return tuple(dict.fromkeys((*a, *b)))


__all__ = ["Check", "CheckStats", "ContractStats", "EvalContext", "QUARANTINE_COLUMNS", "duplicate_hashes",
           "enforce", "evaluate", "merge_stats", "over_budget", "raw_json"]
