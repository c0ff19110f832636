"""The public surface: curated API, error tree, declarations, plans and the CLI contract."""

from __future__ import annotations

import json
import pickle

import dask.dataframe as dd
import pytest
from click.testing import CliRunner

import etl
import etl.errors as errors
from etl import Schema, Source, Target, pipeline
from etl.cli import cli


def test_public_api_is_curated():
    assert etl.__all__ == sorted(set(etl.__all__), key=etl.__all__.index)  # no duplicates
    for name in etl.__all__:
        assert hasattr(etl, name), name
    assert {"pipeline", "Source", "Target", "Schema", "run", "plan", "preview", "EtlError"} <= set(etl.__all__)


@pytest.mark.parametrize("cls", [getattr(errors, n) for n in errors.__all__])
def test_every_error_pickles_with_its_attributes_and_has_the_root(cls):
    err = cls("what failed; expected x; found y; do z", file="f.parquet", column="c")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls and str(back) == str(err)
    assert (back.file, back.column) == ("f.parquet", "c")
    assert isinstance(back, etl.EtlError)


def test_exit_codes_are_distinct_per_failure_class():
    leaves = [errors.ConfigError, errors.ClusterError, errors.SourceError, errors.SchemaError,
              errors.ContractError, errors.CommitError]
    codes = [c.exit_code for c in leaves]
    assert len(set(codes)) == len(codes) and 0 not in codes and 2 not in codes and 1 not in codes


def _t(src: dd.DataFrame) -> dd.DataFrame:
    return src


def test_declaration_mistakes_are_config_errors():
    schema = Schema({"id": "int64"})
    with pytest.raises(etl.ConfigError, match="unused sources"):
        pipeline(name="x", sources={"a": Source.parquet("a"), "b": Source.parquet("b")},
                 target=Target.merge("t", keys=["id"]), schema=schema)(_t)
    with pytest.raises(etl.ConfigError, match=r"keys \['nope'\] are not in the declared schema"):
        pipeline(name="x", sources={"src": Source.parquet("a")}, target=Target.merge("t", keys=["nope"]),
                 schema=schema)(_t)
    with pytest.raises(etl.ConfigError, match="needs keys"):
        Target("t", "merge")
    with pytest.raises(etl.ConfigError, match="unknown column type"):
        Schema({"id": "int65"})
    with pytest.raises(etl.ConfigError, match="version= applies to Delta"):
        Source("x", "parquet", version=1)


def test_unknown_pipeline_lists_the_known_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(etl.PipelineNotFoundError, match="found .*'tpch_lineitem_daily'"):
        etl.load_pipeline("nope", paths=[_pipelines_dir()])


def _pipelines_dir() -> str:
    import os

    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "pipelines")


def test_cli_list_json_finds_the_examples():
    out = CliRunner().invoke(cli, ["--pipelines", _pipelines_dir(), "list", "--json"])
    assert out.exit_code == 0, out.output
    names = {p["name"] for p in json.loads(out.output)}
    assert {"tpch_lineitem_daily", "revenue_by_segment_daily"} <= names


def test_cli_plan_json_has_the_contract_keys_and_touches_nothing(tmp_path):
    wh = str(tmp_path / "wh")
    out = CliRunner().invoke(cli, ["--pipelines", _pipelines_dir(), "plan", "tpch_lineitem_daily",
                                   "--date", "2026-01-02", "--warehouse", wh, "--json",
                                   "--param", "demo_orders=300"])
    assert out.exit_code == 0, out.output
    plan = json.loads(out.output[out.output.index("{"):])
    assert {"pipeline", "sources", "target", "mode", "merge_keys", "partition_by"} <= set(plan)
    assert plan["target"].endswith("/wh/lineitem") and plan["mode"] == "merge"
    assert plan["merge_keys"] == ["l_orderkey", "l_linenumber"] and plan["partition_by"] == ["ship_month"]
    assert plan["compression"] == "lz4"  # the file format is part of what a plan shows
    assert plan["sources"][0]["files"] == 1 and "ds=2026-01-02" in plan["sources"][0]["paths"][0]
    assert plan["touched_partitions"] and all("ship_month" in t for t in plan["touched_partitions"])
    assert not (tmp_path / "wh" / "lineitem").exists()  # planning never creates or writes the table


@pytest.mark.parametrize("args,code", [
    (["run", "nope"], 3),
    (["run", "tpch_lineitem_daily", "--date", "2026-02-30"], 3),
    (["run", "tpch_lineitem_daily", "--bogus"], 2),
])
def test_cli_exit_codes(args, code, tmp_path):
    out = CliRunner().invoke(cli, ["--pipelines", _pipelines_dir(), *args, "--warehouse", str(tmp_path)]
                             if "--bogus" not in args else ["--pipelines", _pipelines_dir(), *args])
    assert out.exit_code == code, out.output


def test_retry_policy_backoff_is_bounded_with_full_jitter():
    import random

    p = etl.RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=1.0)
    rng = random.Random(0)
    delays = [p.delay(a, rng) for a in range(50) for _ in range(20)]
    assert max(delays) <= 1.0 and min(delays) >= 0.0
    assert [p.cap(a) for a in range(5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert p.gives_up_after(4) and not p.gives_up_after(3)
    with pytest.raises(etl.ConfigError):
        etl.RetryPolicy(max_attempts=0)
