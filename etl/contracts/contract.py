"""A data contract: the checks a batch's rows must pass, the error budget, the drift policy.

Examples
--------
>>> c = Contract(checks=[Check.not_null("id", action="quarantine"), Check.in_range("qty", 0, 100)],
...              error_budget=0.01)
>>> c.budget_limit(rows_in=1_000)
10
>>> Contract(error_budget=25).budget_limit(rows_in=1_000)
25
>>> Contract(error_budget=None).budget_limit(rows_in=1_000) is None
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from etl.contracts.checks import FAIL, QUARANTINE, WARN, Check
from etl.contracts.drift import check_policy
from etl.errors import ConfigError


@dataclass(frozen=True)
class Contract:
    """What a batch's rows must satisfy before anything is committed.

    Parameters
    ----------
    checks : sequence of Check
        Evaluated in order; a row breaking several quarantine checks is
        quarantined once, under the first, with every reason.
    error_budget : int, float or None
        The most quarantined rows a batch may have and still commit: an
        ``int`` is a count, a ``float`` in ``[0, 1]`` a fraction of the rows
        checked, None no limit. Default ``0.01`` (1 %). Beyond it the batch
        fails with :class:`~etl.errors.ContractError` and commits nothing.
    schema_drift : {"fail", "ignore", "evolve"}
        What to do with columns that appear in or vanish from the data; see
        :mod:`etl.contracts.drift`. Default ``"fail"``.
    """

    checks: Sequence[Check] = ()
    error_budget: int | float | None = 0.01
    schema_drift: str = "fail"

    def __post_init__(self) -> None:
        checks = tuple(self.checks)
        bad = [c for c in checks if not isinstance(c, Check)]
        if bad:
            raise ConfigError(f"Contract checks must be Check objects (Check.not_null(...) ...), found {bad[0]!r}.")
        names = [c.name for c in checks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"Contract: check names must be unique, found {dup} more than once. Pass name=.")
        object.__setattr__(self, "checks", checks)
        _check_budget(self.error_budget)
        check_policy(self.schema_drift)

    def budget_limit(self, rows_in: int) -> int | None:
        """The most rows that may be quarantined out of ``rows_in``; None for no limit."""
        b = self.error_budget
        if b is None:
            return None
        if isinstance(b, float):
            return math.floor(b * rows_in + 1e-9)
        return int(b)

    def by_action(self, action: str) -> tuple:
        return tuple(c for c in self.checks if c.action == action)

    def columns(self) -> set[str]:
        """Every column a check names."""
        return {col for c in self.checks for col in c.columns}

    def validate(self, names: Iterable[str]) -> None:
        """Check that every column the checks name is among ``names`` (the declared schema).

        Raises
        ------
        ConfigError
            Naming the check and the unknown column.
        """
        known = set(names)
        for c in self.checks:
            unknown = [col for col in c.columns if col not in known]
            if unknown:
                raise ConfigError(f"contract check {c.name!r} names column {unknown[0]!r}, which is not in the "
                                  f"declared schema {sorted(known)}. Fix the check or declare the column.",
                                  check=c.name, column=unknown[0])


def _check_budget(b) -> None:
    ok = (b is None or (isinstance(b, int) and not isinstance(b, bool) and b >= 0)
          or (isinstance(b, float) and 0.0 <= b <= 1.0))
    if not ok:
        raise ConfigError(f"error_budget={b!r} is not valid: use a row count (int >= 0), a fraction "
                          "(float in [0, 1]) or None for no limit.", value=repr(b))


__all__ = ["Contract", "Check", "FAIL", "QUARANTINE", "WARN"]
