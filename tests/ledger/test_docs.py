"""The ledger's docstring examples run, and its public names are the ones documented."""

import doctest
import importlib

import pytest

import etl.ledger

MODULES = ["etl.ledger", "etl.ledger.states", "etl.ledger.attempts", "etl.ledger.store", "etl.ledger.reconcile",
           "etl.ledger.verify", "etl.ledger.facts"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0 or name == "etl.ledger"


def test_public_names():
    assert sorted(etl.ledger.__all__) == sorted([
        "Attempt", "BatchState", "DEFAULT_LEASE", "EVENTS", "Event", "Finding", "LEDGER_DIR", "LEDGER_SCHEMA",
        "Ledger", "Reconciliation", "STATES", "TableFacts", "TransitionError", "VerifyReport", "attempts",
        "current_states", "fingerprint_delta", "is_stale", "read_table_facts", "reconcile", "transition",
        "verify"])
    assert all(hasattr(etl.ledger, n) for n in etl.ledger.__all__)
