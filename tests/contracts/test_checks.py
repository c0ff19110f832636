"""Declaring checks and contracts: validation, null semantics, bad predicates, drift policies."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from etl.contracts import (Check, Contract, EvalContext, apply_drift, detect_drift, evaluate, evolved_fields,
                           raw_json)
from etl.errors import ConfigError, SchemaError


@pytest.mark.parametrize("make, message", [
    (lambda: Check.in_range("x"), "needs min=, max= or both"),
    (lambda: Check.in_range("x", 5, 1), "min 5 is greater than max 1"),
    (lambda: Check.allowed("x", []), "at least one allowed value"),
    (lambda: Check.unique([]), "at least one column"),
    (lambda: Check.not_null("x", action="drop"), "action 'drop' is not one of"),
    (lambda: Check.row("sql", "price > 0"), "Strings and SQL are not evaluated"),
    (lambda: Check.row("", lambda d: d.x > 0), "needs a non-empty name"),
    (lambda: Contract([Check.not_null("x"), Check.not_null("x")]), "names must be unique"),
    (lambda: Contract(["not_null(x)"]), "must be Check objects"),
    (lambda: Contract(error_budget=True), "error_budget=True is not valid"),
    (lambda: Contract(error_budget=-1), "error_budget=-1 is not valid"),
    (lambda: Contract(error_budget=1.5), "error_budget=1.5 is not valid"),
    (lambda: Contract(schema_drift="merge"), "schema_drift='merge' is not one of"),
])
def test_bad_declarations_are_config_errors(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_contract_columns_are_validated_against_the_schema():
    contract = Contract([Check.not_null("id"), Check.unique(["id", "line"])])
    contract.validate(["id", "line", "qty"])
    assert contract.columns() == {"id", "line"}
    with pytest.raises(ConfigError, match="check 'unique:id,line' names column 'line'") as info:
        contract.validate(["id"])
    assert info.value.column == "line"


def test_nulls_break_only_not_null():
    df = pd.DataFrame({"x": pd.array([None, 5, 500], dtype="Int64"), "s": pd.array([None, "a", "b"], dtype="string")})
    assert Check.in_range("x", 0, 100).violations(df).tolist() == [False, False, True]
    assert Check.allowed("s", {"a"}).violations(df).tolist() == [False, False, True]
    assert Check.not_null("x").violations(df).tolist() == [True, False, False]
    assert Check.not_null("s").violations(df).tolist() == [True, False, False]


def test_ranges_work_on_dates_and_strings():
    dates = pd.Series(pd.array([dt.date(2026, 1, 1), dt.date(2027, 1, 1), None],
                               dtype=pd.ArrowDtype(pa.date32())))
    df = pd.DataFrame({"d": dates, "s": ["a", "m", "z"]})
    assert Check.in_range("d", max=dt.date(2026, 12, 31)).violations(df).tolist() == [False, True, False]
    assert Check.in_range("s", "b", "y").violations(df).tolist() == [True, False, True]
    with pytest.raises(ConfigError, match="cannot judge column 'd'"):
        Check.in_range("d", min=5).violations(df)


def test_row_predicates_must_behave():
    df = pd.DataFrame({"x": [1, 2, 3]})
    with pytest.raises(ConfigError, match="predicate raised KeyError"):
        Check.row("bad", lambda d: d["nope"] > 0).violations(df)
    with pytest.raises(ConfigError, match="one boolean per row \\(3\\), found bool"):
        Check.row("scalar", lambda d: True).violations(df)
    with pytest.raises(ConfigError, match="of length 2"):
        Check.row("short", lambda d: [True, False]).violations(df)
    nullable = Check.row("na", lambda d: pd.Series([True, None, False], dtype="boolean"))
    assert nullable.violations(df).tolist() == [False, True, True]
    assert Check.row("np", lambda d: (d.x > 1).to_numpy()).violations(df).tolist() == [True, False, False]


def test_a_missing_column_is_a_schema_error():
    with pytest.raises(SchemaError, match="column 'qty' is not in the data") as info:
        Check.in_range("qty", 0, 1).violations(pd.DataFrame({"q": [1]}))
    assert info.value.column == "qty"


SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("note", pa.string()),
                    pa.field("n", pa.int64())])


def test_drift_fail_names_new_and_missing_columns():
    df = pd.DataFrame({"id": [1], "note": ["a"], "extra": [1.0]})
    with pytest.raises(SchemaError, match=r"new columns \['extra'\], missing columns \['n'\]") as info:
        apply_drift(df, SCHEMA, "fail")
    assert (info.value.new, info.value.missing) == (["extra"], ["n"])
    assert apply_drift(df[["id"]].assign(note="x", n=1), SCHEMA, "fail").columns.tolist() == ["id", "note", "n"]


def test_drift_ignore_and_evolve_fill_missing_nullable_columns():
    df = pd.DataFrame({"id": [1, 2], "extra": ["u", "v"], "_etl_row": [0, 1]})
    ignored = apply_drift(df, SCHEMA, "ignore")
    assert ignored.columns.tolist() == ["id", "_etl_row", "note", "n"] and ignored["n"].isna().all()
    evolved = apply_drift(df, SCHEMA, "evolve")
    assert evolved.columns.tolist() == ["id", "extra", "_etl_row", "note", "n"]
    assert [(f.name, f.type, f.nullable) for f in evolved_fields(SCHEMA, df)] == [("extra", pa.string(), True)]
    assert apply_drift(df, SCHEMA, "ignore", extra_allowed=["extra"]).columns.tolist()[:2] == ["id", "extra"]


def test_a_missing_not_null_column_fails_under_every_policy():
    for policy in ("ignore", "evolve"):
        with pytest.raises(SchemaError, match="cannot fill the not-null column 'id'"):
            apply_drift(pd.DataFrame({"note": ["a"]}), SCHEMA, policy)


def test_evolved_columns_need_a_type():
    with pytest.raises(SchemaError, match="holds only nulls"):
        evolved_fields(SCHEMA, pd.DataFrame({"id": [1], "x": [None]}))
    assert evolved_fields(SCHEMA, pd.DataFrame({"id": [1]})) == []


def test_evaluate_applies_the_drift_policy_and_reports_it():
    contract = Contract([Check.not_null("note", action="warn")], schema_drift="ignore")
    good, _, stats = evaluate(contract, pd.DataFrame({"id": [1], "junk": [0]}), EvalContext(schema=SCHEMA))
    assert good.columns.tolist() == ["id", "note", "n"]
    assert (stats.new_columns, stats.missing_columns, stats.check("not_null:note").violations) == (("junk",),
                                                                                                  ("note", "n"), 1)
    assert detect_drift(SCHEMA, good).new == () and not detect_drift(SCHEMA, good)


def test_raw_json_handles_every_value_kind():
    df = pd.DataFrame({"i": pd.array([1, None], dtype="Int64"), "f": [float("inf"), float("nan")],
                       "d": pd.Series(pd.array([dt.date(2026, 1, 2), None], dtype=pd.ArrowDtype(pa.date32()))),
                       "t": pd.to_datetime(["2026-01-02T03:04:05Z", None], utc=True), "b": [True, False],
                       "s": ["é", None], "raw": [b"\x00\x01", None]})
    assert raw_json(df) == [
        '{"i": 1, "f": "inf", "d": "2026-01-02", "t": "2026-01-02T03:04:05+00:00", "b": true, "s": "é", '
        '"raw": "0001"}',
        '{"i": null, "f": null, "d": null, "t": null, "b": false, "s": null, "raw": null}']
