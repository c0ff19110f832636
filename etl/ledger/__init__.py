"""The run ledger: a durable record of every run and batch, and what ``etl verify`` checks.

:mod:`~etl.ledger.states`
    The pure state machine: ``pending → running → succeeded | failed``.
:mod:`~etl.ledger.attempts`
    Pure folds of the event log: current states, one :class:`Attempt` per run.
:mod:`~etl.ledger.store`
    :class:`Ledger`, the append-only Delta table ``<warehouse>/_etl_ledger``.
:mod:`~etl.ledger.reconcile`, :mod:`~etl.ledger.verify`
    Pure row accounting of a batch, and the ledger-versus-table comparison.
:mod:`~etl.ledger.facts`
    Reading a table's history and content fingerprint for verification.
"""

from etl.ledger.attempts import Attempt, attempts, current_states
from etl.ledger.reconcile import Reconciliation, reconcile
from etl.ledger.states import (EVENTS, STATES, BatchState, Event, TransitionError, is_stale, transition)
from etl.ledger.verify import Finding, VerifyReport, fingerprint_delta, verify

_IO = {"DEFAULT_LEASE": "store", "LEDGER_DIR": "store", "LEDGER_SCHEMA": "store", "Ledger": "store",
       "TableFacts": "facts", "read_table_facts": "facts"}


def __getattr__(name: str):
    """The store and the table reader load on first use: the pure parts never import deltalake."""
    if name in _IO:
        import importlib

        return getattr(importlib.import_module(f"etl.ledger.{_IO[name]}"), name)
    raise AttributeError(f"module 'etl.ledger' has no attribute {name!r}")

__all__ = [
    "Attempt", "BatchState", "DEFAULT_LEASE", "EVENTS", "Event", "Finding", "LEDGER_DIR", "LEDGER_SCHEMA",
    "Ledger", "Reconciliation", "STATES", "TableFacts", "TransitionError", "VerifyReport", "attempts",
    "current_states", "fingerprint_delta", "is_stale", "read_table_facts", "reconcile", "transition", "verify",
]
