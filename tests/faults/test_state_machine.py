"""Issue 4, fault 7: random sequences of runs, reruns, crashes and resumes against a model.

Rules: ``apply`` (a new day's batch), ``reapply`` (an applied batch again: skipped),
``crash`` (a new batch whose run fails at a commit hook point, in process), and
``resume`` (a crashed batch again). The model applies each batch when its commit
lands, with the documented MERGE semantics (latest ``ts`` wins per key, against
the table too; a delete leaves no tombstone): for batches applied in ``ts``
order it is exactly ``tests.core.helpers.oracle``; a resumed batch may land
after newer ones.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

import etl
from etl.ledger.store import Ledger
from tests.core.helpers import KEYS, SCHEMA, make_pipeline, normalise, oracle, random_batch, write_batch
from tests.faults._faults import data_commits, day, missing_live_files

CRASHES = ("before_commit", "after_commit", "after_commit_lost_response")


class Crash(RuntimeError):
    """The in-process stand-in for a driver dying at a hook point."""


def apply_model(model: dict, batch: pd.DataFrame) -> None:
    """Merge ``batch`` into ``model`` (key -> row) as the table does."""
    latest = batch.sort_values("ts", kind="stable").drop_duplicates(KEYS, keep="last")
    for row in latest.to_dict("records"):
        key = tuple(row[k] for k in KEYS)
        if key in model and model[key]["ts"] > row["ts"]:
            continue  # older than the table's row: stale
        if row["op_delete"]:
            model.pop(key, None)
        else:
            model[key] = {c: row[c] for c in SCHEMA.names}


class Runs(RuleBasedStateMachine):
    """One warehouse per example; ``client`` and ``tmp`` (a tmp_path_factory) are set by the test."""

    client = None
    tmp = None

    def __init__(self):
        super().__init__()
        self.warehouse = str(self.tmp.mktemp("sm"))
        self.url = f"{self.warehouse}/t"
        self.p = make_pipeline()
        self.inputs: dict[str, pd.DataFrame] = {}
        self.applied: list[str] = []     # dates whose commit landed, in commit order
        self.pending: list[str] = []     # dates whose run failed
        self.versions: dict[str, int] = {}
        self.model: dict = {}

    def _new_day(self, seed: int, n: int, deletes: bool) -> str:
        date = day(len(self.inputs) + 1)
        batch = random_batch(np.random.default_rng(seed), n, key_space=30, ts0=len(self.inputs) * 1000,
                             delete_frac=0.2 if deletes else 0.0)
        write_batch(self.warehouse, date, batch, files=1 + n % 2)
        self.inputs[date] = batch
        return date

    def _landed(self, date: str, version: int) -> None:
        apply_model(self.model, self.inputs[date])
        self.applied.append(date)
        self.versions[date] = version

    def _run(self, date: str, hook=None):
        return etl.run(self.p, date=date, warehouse=self.warehouse, client=self.client, hook=hook)

    @rule(seed=st.integers(0, 2**16), n=st.integers(1, 40), deletes=st.booleans())
    def apply(self, seed, n, deletes):
        date = self._new_day(seed, n, deletes)
        r = self._run(date)
        assert r.status == "committed"
        self._landed(date, r.version)

    @precondition(lambda self: self.applied)
    @rule(data=st.data())
    def reapply(self, data):
        date = data.draw(st.sampled_from(self.applied))
        version = DeltaTable(self.url).version()
        r = self._run(date)
        assert (r.status, r.version) == ("skipped", self.versions[date])
        assert DeltaTable(self.url).version() == version

    @rule(seed=st.integers(0, 2**16), n=st.integers(1, 40), deletes=st.booleans(), where=st.sampled_from(CRASHES))
    def crash(self, seed, n, deletes, where):
        event(f"crash at {where}")
        date = self._new_day(seed, n, deletes)
        seen = Counter()

        def hook(point):
            seen[point] += 1
            if where == "before_commit" == point:
                raise Crash("driver dies before the commit")
            if where == "after_commit" == point:
                raise Crash("driver dies after the commit")
            if where == "after_commit_lost_response" and point == "after_commit" and seen[point] == 1:
                raise OSError("connection reset: the commit's response was lost")

        if where == "after_commit_lost_response":  # the commit retries, finds its txn, and reports success
            r = self._run(date, hook)
            assert (r.status, r.attempts, seen["before_commit"]) == ("committed", 2, 1)
            self._landed(date, r.version)
            return
        with pytest.raises(Crash):
            self._run(date, hook)
        if where == "after_commit":
            self._landed(date, DeltaTable(self.url).version())
        self.pending.append(date)
        assert Ledger(self.warehouse).state(self.p.name, date).state == "failed"

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def resume(self, data):
        date = data.draw(st.sampled_from(self.pending))
        self.pending.remove(date)
        r = self._run(date)
        if date in self.applied:
            assert (r.status, r.version) == ("skipped", self.versions[date])
        else:
            assert r.status == "committed"
            self._landed(date, r.version)
        assert Ledger(self.warehouse).state(self.p.name, date).state == "succeeded"

    @invariant()
    def table_is_the_model(self):
        expected = normalise(pd.DataFrame(list(self.model.values()), columns=SCHEMA.names))
        if not DeltaTable.is_deltatable(self.url):
            assert not self.applied
            return
        dt = DeltaTable(self.url)
        assert missing_live_files(self.url) == []
        got = normalise(dt.to_pandas())
        assert not got.duplicated(KEYS).any()
        pd.testing.assert_frame_equal(got, expected, check_dtype=not expected.empty)
        per_app = data_commits(self.url)
        assert all(n == 1 for n in per_app.values()), per_app
        assert sorted(a.split(":")[2] for a in per_app) == sorted(self.applied)

    @invariant()
    def in_ts_order_the_model_is_the_oracle(self):
        if self.applied == sorted(self.applied):
            oracle_frame = oracle([self.inputs[d] for d in self.applied])
            expected = normalise(pd.DataFrame(list(self.model.values()), columns=SCHEMA.names))
            pd.testing.assert_frame_equal(expected, oracle_frame, check_dtype=not expected.empty)


def test_runs_crashes_and_resumes_keep_the_table_equal_to_the_model(client, tmp_path_factory):
    Runs.client, Runs.tmp = client, tmp_path_factory
    run_state_machine_as_test(Runs, settings=settings(max_examples=5, stateful_step_count=6, deadline=None,
                                                      suppress_health_check=list(HealthCheck)))
