"""Contract evaluation: hypothesis properties against a plain per-row model, and the batch verdict."""

from __future__ import annotations

import json
import math

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.contracts import (Check, Contract, EvalContext, duplicate_hashes, enforce, evaluate, merge_stats,
                           over_budget)
from etl.errors import ContractError
from etl.kernels import hash_rows

FLAGS = {"R", "A", "N"}
MODEL = {  # check name -> does this row (a dict) break it?
    "not_null:id": lambda r, f: math.isnan(r["id"]),
    "in_range:qty": lambda r, f: not math.isnan(r["qty"]) and not 0 <= r["qty"] <= 100,
    "allowed:flag": lambda r, f: r["flag"] is not None and r["flag"] not in FLAGS,
    "price_positive": lambda r, f: not r["price"] > 0,
    "unique:key": lambda r, f: f.count(r["key"]) > 1,
}


def make_check(name: str, action: str) -> Check:
    return {"not_null:id": lambda: Check.not_null("id", action=action),
            "in_range:qty": lambda: Check.in_range("qty", 0, 100, action=action),
            "allowed:flag": lambda: Check.allowed("flag", FLAGS, action=action),
            "price_positive": lambda: Check.row("price_positive", lambda df: df.price > 0, action=action),
            "unique:key": lambda: Check.unique("key", action=action)}[name]()


maybe_nan = st.one_of(st.just(float("nan")), st.floats(-50, 200, allow_nan=False))
rows = st.lists(st.fixed_dictionaries({
    "id": maybe_nan, "qty": maybe_nan, "price": maybe_nan,
    "flag": st.sampled_from(["R", "A", "N", "X", "", None]), "key": st.integers(0, 30)}), max_size=40)
checks = st.lists(st.tuples(st.sampled_from(sorted(MODEL)), st.sampled_from(["fail", "quarantine", "warn"])),
                  unique_by=lambda t: t[0], max_size=5)
budgets = st.one_of(st.none(), st.integers(0, 10), st.floats(0, 1))


def frame(data: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(data, columns=["id", "qty", "price", "flag", "key"]).astype(
        {"id": "float64", "qty": "float64", "price": "float64", "key": "int64"})
    df.insert(0, "uid", np.arange(len(df), dtype="int64"))
    return df


def broken(data: list[dict], names: list[str]) -> list[list[str]]:
    keys = [r["key"] for r in data]
    return [[n for n in names if MODEL[n](r, keys)] for r in data]


@settings(max_examples=100, deadline=None)
@given(rows, checks, budgets)
def test_good_and_quarantined_partition_the_input_as_the_model_says(data, spec, budget):
    contract = Contract([make_check(n, a) for n, a in spec], error_budget=budget)
    df = frame(data)
    good, bad, stats = evaluate(contract, df)
    q_names = [n for n, a in spec if a == "quarantine"]
    expect_q = broken(data, q_names)
    q_uids = [json.loads(raw)["uid"] for raw in bad["raw"]]
    assert sorted(good["uid"].tolist() + q_uids) == list(range(len(df)))  # union is the input, disjoint
    assert set(q_uids) == {i for i, b in enumerate(expect_q) if b}  # exactly the rows breaking a quarantine check
    assert good.columns.tolist() == df.columns.tolist()
    for uid, check, reason in zip(q_uids, bad["check"], bad["reason"]):
        assert check == expect_q[uid][0] and reason and len(reason.split("; ")) == len(expect_q[uid])
    all_names = [n for n, _ in spec]
    per_row = broken(data, all_names)
    for n in all_names:
        assert stats.check(n).violations == sum(n in b for b in per_row)
    assert (stats.rows_in, stats.rows_good, stats.rows_quarantined) == (len(df), len(good), len(bad))
    fails = any(stats.check(n).violations for n, a in spec if a == "fail")
    limit = contract.budget_limit(len(df))
    exceeded = limit is not None and len(bad) > limit
    assert over_budget(contract, stats) == exceeded
    if fails or exceeded:
        with pytest.raises(ContractError):
            enforce(contract, stats)
    else:
        enforce(contract, stats)


@settings(max_examples=60, deadline=None)
@given(rows, checks, st.lists(st.integers(0, 40), max_size=4))
def test_partitions_add_up_to_the_whole_batch(data, spec, cuts):
    contract = Contract([make_check(n, a) for n, a in spec], error_budget=None)
    df = frame(data)
    context = EvalContext(duplicate_keys=duplicate_hashes(hash_rows(df, ["key"])))
    whole_good, whole_bad, whole = evaluate(contract, df)
    bounds = sorted({0, len(df), *[min(c, len(df)) for c in cuts]})
    parts = [evaluate(contract, df.iloc[a:b], context) for a, b in zip(bounds, bounds[1:])] or \
        [evaluate(contract, df, context)]
    assert merge_stats(s for _, _, s in parts) == whole
    assert pd.concat([g for g, _, _ in parts])["uid"].tolist() == whole_good["uid"].tolist()
    assert pd.concat([b for _, b, _ in parts])["raw"].tolist() == whole_bad["raw"].tolist()


def test_a_row_breaking_no_check_is_never_quarantined():
    contract = Contract([Check.not_null("id", action="quarantine"), Check.in_range("qty", 0, 100, action="quarantine")])
    df = pd.DataFrame({"id": [1.0, 2.0], "qty": [0.0, 100.0]})  # the bounds are inclusive
    good, bad, stats = evaluate(contract, df)
    assert len(good) == 2 and bad.empty and stats.rows_quarantined == 0


def test_quarantine_rows_carry_provenance_reasons_and_raw_values():
    df = pd.DataFrame({"id": [1.0, None, 3.0], "flag": ["R", "A", "Z"],
                       "_etl_source_file": ["s3://b/f1.parquet"] * 3, "_etl_row": [0, 1, 2]})
    contract = Contract([Check.not_null("id", action="quarantine"),
                         Check.allowed("flag", {"R", "A"}, action="quarantine")], error_budget=None)
    good, bad, _ = evaluate(contract, df)
    assert good.columns.tolist() == ["id", "flag"] and good["id"].tolist() == [1.0]
    assert bad.to_dict("records") == [
        {"source_file": "s3://b/f1.parquet", "row": 1, "check": "not_null:id", "column": "id",
         "reason": "id is null", "raw": '{"id": null, "flag": "A"}'},
        {"source_file": "s3://b/f1.parquet", "row": 2, "check": "allowed:flag", "column": "flag",
         "reason": "flag='Z' is not one of {'A', 'R'}", "raw": '{"id": 3.0, "flag": "Z"}'}]


def test_several_broken_checks_give_one_quarantine_row_with_every_reason():
    contract = Contract([Check.in_range("qty", max=10, action="quarantine"),
                         Check.row("even", lambda d: d.qty % 2 == 0, action="quarantine")], error_budget=None)
    _, bad, stats = evaluate(contract, pd.DataFrame({"qty": [11, 12]}))
    assert bad[["check", "reason"]].values.tolist() == [["in_range:qty", "qty=11 is outside [-inf, 10]; "
                                                         "row check 'even' is false"],
                                                        ["in_range:qty", "qty=12 is outside [-inf, 10]"]]
    assert [c.violations for c in stats.checks] == [2, 1]


def test_a_fail_check_names_check_column_count_and_examples():
    contract = Contract([Check.allowed("l_returnflag", {"R", "A", "N"})])
    df = pd.DataFrame({"l_orderkey": range(10), "l_returnflag": ["R"] * 7 + ["Q", "Q", "Z"]})
    good, bad, stats = evaluate(contract, df)
    assert len(good) == 10 and bad.empty  # a fail check sets no row aside: the batch fails as a whole
    with pytest.raises(ContractError) as info:
        enforce(contract, stats)
    err = info.value
    assert (err.check, err.column, err.count, err.exit_code) == ("allowed:l_returnflag", "l_returnflag", 3, 7)
    assert err.examples[0] == '{"l_orderkey": 7, "l_returnflag": "Q"}'
    assert "failed on 3 of 10 rows" in str(err) and "action='quarantine'" in str(err)


@pytest.mark.parametrize("budget, quarantined, fails", [(2, 2, False), (2, 3, True), (0.2, 2, False),
                                                        (0.2, 3, True), (None, 10, False), (0, 1, True)])
def test_error_budget_boundaries(budget, quarantined, fails):
    contract = Contract([Check.not_null("x", action="quarantine")], error_budget=budget)
    _, _, stats = evaluate(contract, pd.DataFrame({"x": [None] * quarantined + [1.0] * (10 - quarantined)}))
    assert over_budget(contract, stats) == fails
    if fails:
        with pytest.raises(ContractError, match=f"{quarantined} of 10 rows quarantined") as info:
            enforce(contract, stats)
        assert (info.value.quarantined, info.value.rows_in) == (quarantined, 10)
    else:
        enforce(contract, stats)


def test_warn_checks_keep_rows_and_are_listed():
    contract = Contract([Check.in_range("q", 0, 1, action="warn")])
    good, bad, stats = evaluate(contract, pd.DataFrame({"q": [0.5, 7.0]}))
    assert len(good) == 2 and bad.empty and [c.name for c in stats.warned] == ["in_range:q"]
    enforce(contract, stats)
    assert stats.to_dict()["checks"]["in_range:q"] == {"column": "q", "action": "warn", "violations": 1}


def test_batch_wide_uniqueness_uses_the_duplicate_hashes_of_the_whole_batch():
    contract = Contract([Check.unique(["a", "b"], action="quarantine")], error_budget=None)
    batch = pd.DataFrame({"a": [1, 1, 2, 1], "b": ["x", "y", "x", "x"]})
    dups = duplicate_hashes(hash_rows(batch, ["a", "b"]))
    first, second = batch.iloc[:2], batch.iloc[2:]
    assert evaluate(contract, first)[1].empty  # alone, the first partition looks clean
    _, bad1, _ = evaluate(contract, first, EvalContext(duplicate_keys=dups))
    _, bad2, _ = evaluate(contract, second, EvalContext(duplicate_keys=dups))
    assert bad1["raw"].tolist() + bad2["raw"].tolist() == ['{"a": 1, "b": "x"}', '{"a": 1, "b": "x"}']
    assert bad1["reason"].tolist() == ["key a,b=(1, 'x') is held by more than one row"]


def test_a_contract_ships_to_workers_with_its_predicates():
    contract = Contract([Check.row("pos", lambda d: d.v > 0, action="quarantine")], error_budget=None)
    again = cloudpickle.loads(cloudpickle.dumps(contract))
    assert evaluate(again, pd.DataFrame({"v": [1, -1]}))[2].rows_quarantined == 1


def test_an_empty_partition_evaluates_to_nothing():
    contract = Contract([Check.not_null("x", action="quarantine")])
    good, bad, stats = evaluate(contract, pd.DataFrame({"x": pd.Series([], dtype="float64")}))
    assert good.empty and bad.empty and stats.rows_in == 0 and not over_budget(contract, stats)
    assert bad.columns.tolist() == ["source_file", "row", "check", "column", "reason", "raw"]
