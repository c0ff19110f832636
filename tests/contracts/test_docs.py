"""The contracts' docstring examples run, and their public names are the ones documented."""

import doctest
import importlib

import pytest

import etl.contracts

MODULES = ["etl.contracts", "etl.contracts.checks", "etl.contracts.contract", "etl.contracts.drift",
           "etl.contracts.evaluation", "etl.contracts.quarantine"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_public_names():
    assert "evaluate" in etl.contracts.__all__ and callable(etl.contracts.evaluate)
    assert all(hasattr(etl.contracts, n) for n in etl.contracts.__all__)
    assert sorted(etl.contracts.__all__) == sorted([
        "ACTIONS", "Check", "CheckStats", "Contract", "ContractStats", "DRIFT_POLICIES", "Drift", "EvalContext",
        "FAIL", "PROVENANCE_COLUMNS", "QUARANTINE", "QUARANTINE_COLUMNS", "QUARANTINE_DIR", "QUARANTINE_SCHEMA",
        "QuarantineWrite", "ROW_COL", "SOURCE_FILE_COL", "WARN", "apply_drift", "detect_drift",
        "duplicate_hashes", "enforce", "evaluate", "evolved_fields", "merge_stats", "over_budget",
        "quarantine_table", "quarantine_url", "raw_json", "write_quarantine"])
