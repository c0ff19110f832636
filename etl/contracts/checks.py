"""Declared data checks: what a row must satisfy, and what to do when it does not.

Each :class:`Check` finds the rows of a pandas partition that break it and
carries an action:

``"fail"``
    The batch fails with :class:`~etl.errors.ContractError` (naming the
    check, column, count and examples) and commits nothing.
``"quarantine"``
    The rows are moved to the quarantine table with the reason; the rest commits.
``"warn"``
    The rows stay; they are counted and logged.

Nulls break only :meth:`Check.not_null`: ``in_range`` and ``allowed`` judge
the values that are there (as SQL constraints do). A row predicate's null
result counts as a violation.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"qty": [1.0, 150.0, None], "flag": ["R", "X", "A"]})
>>> Check.in_range("qty", 0, 100).violations(df).tolist()
[False, True, False]
>>> Check.allowed("flag", {"R", "A", "N"}, action="quarantine").violations(df).tolist()
[False, True, False]
>>> Check.row("qty_small", lambda d: d.qty < 10, action="warn").violations(df).tolist()
[False, True, True]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from etl.errors import ConfigError, SchemaError

FAIL, QUARANTINE, WARN = "fail", "quarantine", "warn"
ACTIONS = (FAIL, QUARANTINE, WARN)
KINDS = ("not_null", "in_range", "allowed", "unique", "row")


@dataclass(frozen=True)
class Check:
    """One declared check. Build it with the class methods, not directly.

    Attributes
    ----------
    name : str
        Unique within a contract; named in errors and quarantine rows.
    kind : {"not_null", "in_range", "allowed", "unique", "row"}
    columns : tuple of str
        The columns checked (empty for a row predicate).
    action : {"fail", "quarantine", "warn"}
    params : mapping
        ``min``/``max`` for ``in_range``, ``values`` for ``allowed``.
    predicate : callable, optional
        ``row`` checks: ``predicate(df) -> boolean Series``, True where a row passes.
    """

    name: str
    kind: str
    columns: tuple = ()
    action: str = FAIL
    params: Mapping[str, Any] = field(default_factory=dict)
    predicate: Callable[[pd.DataFrame], Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"check {self.name!r}: unknown kind {self.kind!r}; expected one of {KINDS}.")
        if self.action not in ACTIONS:
            raise ConfigError(f"check {self.name!r}: action {self.action!r} is not one of {ACTIONS}.")
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"a {self.kind} check needs a non-empty name, found {self.name!r}.")
        object.__setattr__(self, "columns", tuple(self.columns))

    @property
    def column(self) -> str | None:
        """The checked column(s) as one string (``a,b`` for a composite key); None for row predicates."""
        return ",".join(self.columns) or None

    # ------------------------------------------------------------ declaring

    @classmethod
    def not_null(cls, column: str, action: str = FAIL, name: str | None = None) -> "Check":
        """Rows where ``column`` is null (or NaN) break the check."""
        return cls(name or f"not_null:{column}", "not_null", (column,), action)

    @classmethod
    def in_range(cls, column: str, min: Any = None, max: Any = None, action: str = FAIL,
                 name: str | None = None) -> "Check":
        """Non-null values below ``min`` or above ``max`` (both inclusive; None: unbounded) break it."""
        if min is None and max is None:
            raise ConfigError(f"in_range check on {column!r} needs min=, max= or both.")
        if min is not None and max is not None and min > max:
            raise ConfigError(f"in_range check on {column!r}: min {min!r} is greater than max {max!r}.")
        return cls(name or f"in_range:{column}", "in_range", (column,), action, {"min": min, "max": max})

    @classmethod
    def allowed(cls, column: str, values: Iterable[Any], action: str = FAIL, name: str | None = None) -> "Check":
        """Non-null values outside ``values`` break the check."""
        values = frozenset(values)
        if not values:
            raise ConfigError(f"allowed check on {column!r} needs at least one allowed value.")
        return cls(name or f"allowed:{column}", "allowed", (column,), action, {"values": values})

    @classmethod
    def unique(cls, columns: str | Iterable[str], action: str = FAIL, name: str | None = None) -> "Check":
        """Every row of a key (the merge keys, usually) held by more than one row breaks the check.

        Within one partition the check is exact. For the whole batch, the runner
        passes the key hashes seen more than once (see :class:`EvalContext`).
        """
        cols = (columns,) if isinstance(columns, str) else tuple(columns)
        if not cols:
            raise ConfigError("unique check needs at least one column.")
        return cls(name or f"unique:{','.join(cols)}", "unique", cols, action)

    @classmethod
    def row(cls, name: str, predicate: Callable[[pd.DataFrame], Any], action: str = FAIL) -> "Check":
        """A custom rule: ``predicate(df)`` returns a boolean Series, True where the row passes."""
        if not callable(predicate):
            raise ConfigError(f"row check {name!r}: predicate must be a callable taking a pandas DataFrame, "
                              f"found {type(predicate).__name__}. Strings and SQL are not evaluated.")
        return cls(name, "row", (), action, {}, predicate)

    # ------------------------------------------------------------ evaluating

    def violations(self, df: pd.DataFrame, duplicate_keys: frozenset | None = None) -> np.ndarray:
        """A boolean array, True for each row of ``df`` that breaks the check.

        Raises
        ------
        SchemaError
            A checked column is missing from ``df``.
        ConfigError
            The check cannot be applied to these values (a row predicate raised
            or returned something else than one boolean per row; a bound that
            cannot be compared with the column).
        """
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise SchemaError(f"check {self.name!r}: column {missing[0]!r} is not in the data; found "
                              f"{list(df.columns)}. Fix the check or the transform.", column=missing[0])
        try:
            return _VIOLATIONS[self.kind](self, df, duplicate_keys)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"check {self.name!r} cannot judge column {self.column!r} of dtype "
                              f"{_dtypes(df, self.columns)}: {exc}. Fix the check's bounds or values.",
                              check=self.name) from exc

    def reason(self, df: pd.DataFrame) -> list[str]:
        """One reason text per row of ``df`` (rows that break the check)."""
        if self.kind == "row":
            return [f"row check {self.name!r} is false"] * len(df)
        if self.kind == "unique":
            return [f"key {self.column}={_key(r)} is held by more than one row"
                    for r in df[list(self.columns)].itertuples(index=False)]
        col = self.columns[0]
        if self.kind == "not_null":
            return [f"{col} is null"] * len(df)
        if self.kind == "in_range":
            lo, hi = self.params["min"], self.params["max"]
            bounds = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
            return [f"{col}={v!r} is outside {bounds}" for v in _values(df[col])]
        allowed = sorted(map(repr, self.params["values"]))
        return [f"{col}={v!r} is not one of {{{', '.join(allowed)}}}" for v in _values(df[col])]


def _not_null(c: Check, df: pd.DataFrame, _dups) -> np.ndarray:
    return df[c.columns[0]].isna().to_numpy(dtype=bool)


def _in_range(c: Check, df: pd.DataFrame, _dups) -> np.ndarray:
    s = df[c.columns[0]]
    bad = pd.Series(False, index=df.index)
    if c.params["min"] is not None:
        bad |= (s < c.params["min"]).fillna(False).astype(bool)
    if c.params["max"] is not None:
        bad |= (s > c.params["max"]).fillna(False).astype(bool)
    return (bad & s.notna()).to_numpy(dtype=bool)


def _allowed(c: Check, df: pd.DataFrame, _dups) -> np.ndarray:
    s = df[c.columns[0]]
    return (~s.isin(c.params["values"]) & s.notna()).to_numpy(dtype=bool)


def _unique(c: Check, df: pd.DataFrame, dups: frozenset | None) -> np.ndarray:
    bad = df.duplicated(subset=list(c.columns), keep=False).to_numpy(dtype=bool)
    if dups:
        from etl.kernels import hash_rows

        hashes = hash_rows(df, list(c.columns))
        bad = bad | np.isin(hashes, np.fromiter(dups, dtype=np.uint64, count=len(dups)))
    return bad


def _row(c: Check, df: pd.DataFrame, _dups) -> np.ndarray:
    try:
        result = c.predicate(df)
    except Exception as exc:
        raise ConfigError(f"row check {c.name!r}: the predicate raised {type(exc).__name__}: {exc}. Fix the "
                          "predicate; it gets the partition as a pandas DataFrame.", check=c.name) from exc
    if not hasattr(result, "__len__") or len(result) != len(df):
        raise ConfigError(f"row check {c.name!r}: the predicate must return one boolean per row ({len(df)}), "
                          f"found {type(result).__name__} of length {getattr(result, '__len__', lambda: '?')()}.",
                          check=c.name)
    passed = result if isinstance(result, pd.Series) else pd.Series(np.asarray(result))
    if passed.dtype != bool:
        passed = passed.astype("boolean").fillna(False)
    return ~passed.to_numpy(dtype=bool)


_VIOLATIONS = {"not_null": _not_null, "in_range": _in_range, "allowed": _allowed, "unique": _unique, "row": _row}


def _values(s: pd.Series) -> list:
    return [v.item() if hasattr(v, "item") else v for v in s.tolist()]


def _key(row: tuple) -> str:
    return repr(row[0]) if len(row) == 1 else repr(tuple(row))


def _dtypes(df: pd.DataFrame, columns: tuple) -> str:
    return ", ".join(str(df[c].dtype) for c in columns) or "(row)"
