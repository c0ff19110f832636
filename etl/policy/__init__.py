"""Decision logic kept apart from I/O: retry policy (and, later, the run ledger and planner)."""
