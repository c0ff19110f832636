"""Table maintenance: compact, vacuum, restore, and read a table's history.

Each operation on the table is a Delta transaction of its own, recorded in the
log like a run: ``etl.operation`` (``OPTIMIZE``, ``VACUUM``, ``RESTORE``),
``etl.run_id`` and the options used, under ``etl.*`` in ``DeltaTable.history()``.

Vacuum never deletes a file that a run in flight may still commit or read: the
retention is raised past the oldest live run lease (see :mod:`etl.maintain.vacuum`).
"""

from __future__ import annotations

from etl.maintain.history import Commit, history
from etl.maintain.optimize import OptimizeResult, optimize
from etl.maintain.restore import RestoreResult, restore
from etl.maintain.table import open_existing, resolve
from etl.maintain.vacuum import Retention, VacuumResult, decide_retention, vacuum

__all__ = ["resolve", "open_existing", "optimize", "OptimizeResult", "vacuum", "VacuumResult", "Retention",
           "decide_retention", "restore", "RestoreResult", "history", "Commit"]
