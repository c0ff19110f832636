"""Data contracts: checks on a batch's rows, an error budget, schema drift, and the quarantine.

Declare a :class:`Contract` of :class:`Check` objects (pure: importing them
loads no Delta code, so the definition layer may use them); the runner calls
:func:`evaluate` on every partition (on the workers), adds the statistics up
with :func:`merge_stats`, :func:`enforce`-s the contract on the driver before
committing, and writes the quarantined rows with :func:`write_quarantine`.

Examples
--------
>>> contract = Contract(
...     checks=[Check.not_null("l_orderkey", action="quarantine"),
...             Check.in_range("l_quantity", 0, 100, action="quarantine"),
...             Check.allowed("l_returnflag", {"R", "A", "N"}),
...             Check.row("price_positive", lambda df: df.l_extendedprice > 0, action="quarantine")],
...     error_budget=0.01)
>>> [c.action for c in contract.checks]
['quarantine', 'quarantine', 'fail', 'quarantine']
"""

from etl.contracts.checks import ACTIONS, FAIL, QUARANTINE, WARN, Check
from etl.contracts.contract import Contract
from etl.contracts.drift import (DRIFT_POLICIES, PROVENANCE_COLUMNS, ROW_COL, SOURCE_FILE_COL, Drift,
                                 apply_drift, detect_drift, evolved_fields)
from etl.contracts.evaluation import (QUARANTINE_COLUMNS, CheckStats, ContractStats, EvalContext, duplicate_hashes,
                                    enforce, evaluate, merge_stats, over_budget, raw_json)

_IO = {"QUARANTINE_DIR", "QUARANTINE_SCHEMA", "QuarantineWrite", "quarantine_table", "quarantine_url",
       "write_quarantine"}


def __getattr__(name: str):
    """The quarantine names load on first use, so declaring a contract never imports the Delta writer."""
    if name in _IO:
        from etl.contracts import quarantine

        return getattr(quarantine, name)
    raise AttributeError(f"module 'etl.contracts' has no attribute {name!r}")

__all__ = [
    "ACTIONS", "Check", "CheckStats", "Contract", "ContractStats", "DRIFT_POLICIES", "Drift", "EvalContext",
    "FAIL", "PROVENANCE_COLUMNS", "QUARANTINE", "QUARANTINE_COLUMNS", "QUARANTINE_DIR", "QUARANTINE_SCHEMA",
    "QuarantineWrite", "ROW_COL", "SOURCE_FILE_COL", "WARN", "apply_drift", "detect_drift", "duplicate_hashes",
    "enforce", "evaluate", "evolved_fields", "merge_stats", "over_budget", "quarantine_table", "quarantine_url",
    "raw_json", "write_quarantine",
]
