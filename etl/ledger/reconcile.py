"""Row accounting of one batch: every row read is committed, quarantined or a dropped duplicate. Pure.

Examples
--------
>>> reconcile(rows_read=100, committed=95, quarantined=4, duplicates_dropped=1).balanced
True
>>> r = reconcile(rows_read=100, committed=90, quarantined=4, duplicates_dropped=1)
>>> (r.balanced, r.difference)
(False, 5)
>>> print(r)
unbalanced: 100 rows read, 95 accounted for (90 committed + 4 quarantined + 1 duplicates dropped); 5 rows unaccounted for
"""

from __future__ import annotations

from dataclasses import dataclass

from etl.errors import ConfigError


@dataclass(frozen=True)
class Reconciliation:
    """The accounting of one batch.

    ``difference`` is ``rows_read - (committed + quarantined + duplicates_dropped)``:
    positive when rows vanished, negative when rows appeared. ``balanced`` is
    None when the number of rows read is unknown (CSV or JSON sources).
    """

    rows_read: int | None
    committed: int
    quarantined: int
    duplicates_dropped: int

    @property
    def accounted(self) -> int:
        return self.committed + self.quarantined + self.duplicates_dropped

    @property
    def difference(self) -> int | None:
        return None if self.rows_read is None else self.rows_read - self.accounted

    @property
    def balanced(self) -> bool | None:
        return None if self.rows_read is None else self.difference == 0

    def to_dict(self) -> dict:
        return {"rows_read": self.rows_read, "committed": self.committed, "quarantined": self.quarantined,
                "duplicates_dropped": self.duplicates_dropped, "difference": self.difference,
                "balanced": self.balanced}

    def __str__(self) -> str:
        parts = (f"{self.committed} committed + {self.quarantined} quarantined + "
                 f"{self.duplicates_dropped} duplicates dropped")
        if self.rows_read is None:
            return f"unknown: rows read not counted; {self.accounted} accounted for ({parts})"
        verdict = "balanced" if self.balanced else "unbalanced"
        tail = "" if self.balanced else (f"; {self.difference} rows unaccounted for" if self.difference > 0
                                         else f"; {-self.difference} rows more than were read")
        return f"{verdict}: {self.rows_read} rows read, {self.accounted} accounted for ({parts}){tail}"


def reconcile(rows_read: int | None, committed: int, quarantined: int, duplicates_dropped: int) -> Reconciliation:
    """Whether a batch's rows balance: ``rows_read == committed + quarantined + duplicates_dropped``.

    Parameters
    ----------
    rows_read : int or None
        Rows the contract step saw (the transform's output), or the rows read
        from the source when the transform keeps every row. None if unknown.
    committed : int
        Rows that reached the commit: ``rows_in - duplicates_dropped`` of the
        stage counts (inserted + updated + unchanged + deleted ...).
    quarantined : int
        Rows the contract moved to quarantine.
    duplicates_dropped : int
        Rows dropped because a later row had the same merge key.

    Raises
    ------
    ConfigError
        A count is negative.
    """
    counts = {"rows_read": rows_read, "committed": committed, "quarantined": quarantined,
              "duplicates_dropped": duplicates_dropped}
    bad = {k: v for k, v in counts.items() if v is not None and int(v) < 0}
    if bad:
        raise ConfigError(f"reconcile: counts must be >= 0, found {bad}.")
    return Reconciliation(None if rows_read is None else int(rows_read), int(committed), int(quarantined),
                          int(duplicates_dropped))
