"""The example pipeline end to end on S3 (moto, out of process), and the canary secret nowhere to be found.

One run of ``tpch_lineitem_daily`` with its warehouse on ``s3://`` (input
uploaded first), then a rerun. Credentials come from the environment only
(``s3_env``); the canary secret and key id must appear in no object of the
bucket, no log record, no result, and no task the scheduler ran.
"""

from __future__ import annotations

import io
import json
import logging
import traceback
from pathlib import Path
from types import SimpleNamespace

import cloudpickle
import dask.dataframe as dd
import pandas as pd
import pytest
from deltalake import DeltaTable
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.protocol import pickle as dpickle

import etl
from etl.demo.tpch import write_demo
from etl.errors import SourceError
from etl.io.storage import Location
from etl.planning.planner import make_plan
from etl.run.runner import build_output

KEYS = ["l_orderkey", "l_linenumber"]
COMPARED = [*KEYS, "l_updated_at", "l_quantity", "l_extendedprice", "l_comment", "l_shipdate", "l_partkey"]


class SpecWatch(SchedulerPlugin):
    """Pickles the run spec of every task the scheduler gets and looks for the needles in it."""

    name = "etl-test-spec-watch"

    def __init__(self, needles: list[str]):
        self.needles = [n.encode() for n in needles]
        self.seen: set = set()
        self.leaks: list = []
        self.scheduler = None

    def transition(self, key, start, finish, *args, **kwargs):
        ts = self.scheduler.tasks.get(key) if self.scheduler is not None else None
        if key in self.seen or ts is None or ts.run_spec is None:
            return
        self.seen.add(key)
        blob = dpickle.dumps(ts.run_spec)
        if any(n in blob for n in self.needles):
            self.leaks.append(key)


def _install(plugin: SpecWatch, dask_scheduler=None) -> None:
    plugin.scheduler = dask_scheduler
    dask_scheduler.add_plugin(plugin, name=plugin.name)


def _oracle(local: Path) -> pd.DataFrame:
    raw = pd.concat([pd.read_parquet(f) for f in sorted(local.glob("raw/lineitem/ds=*/*.parquet"))],
                    ignore_index=True)
    latest = raw.sort_values("l_updated_at", kind="stable").drop_duplicates(KEYS, keep="last")
    return latest, len(raw)


def _rows(df: pd.DataFrame) -> pd.DataFrame:
    out = df[COMPARED].copy()
    out["l_shipdate"] = out["l_shipdate"].astype(str)
    out["l_comment"] = out["l_comment"].astype(str)
    return out.sort_values(KEYS).reset_index(drop=True)


@pytest.fixture(scope="module")
def s3_run(s3_env, s3_client, dask_cluster, dask_client, tmp_path_factory):
    bucket = "etl-pipeline-e2e"
    s3_client.create_bucket(Bucket=bucket)
    local = tmp_path_factory.mktemp("demo")
    write_demo(str(local), orders_count=2000)
    fs = Location(f"s3://{bucket}").fs
    for f in sorted(local.glob("raw/**/*.parquet")):
        fs.put_file(str(f), f"{bucket}/wh/{f.relative_to(local).as_posix()}")

    watch = SpecWatch([s3_env.secret, s3_env.key_id])
    dask_client.run_on_scheduler(_install, watch)
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root, etl_log = logging.getLogger(), logging.getLogger("etl")
    old = root.level, etl_log.level
    root.addHandler(handler)
    if not etl_log.propagate:  # etl.observe.logs.configure() detaches etl's records from the root logger
        etl_log.addHandler(handler)
    root.setLevel(logging.DEBUG)
    etl_log.setLevel(logging.DEBUG)
    try:
        warehouse = f"s3://{bucket}/wh"
        first = etl.run("tpch_lineitem_daily", warehouse=warehouse, params={"demo_orders": 2000}, client=dask_client)
        again = etl.run("tpch_lineitem_daily", warehouse=warehouse, params={"demo_orders": 2000}, client=dask_client)
    finally:
        root.removeHandler(handler)
        etl_log.removeHandler(handler)
        root.setLevel(old[0])
        etl_log.setLevel(old[1])
    watched = dask_cluster.scheduler.plugins.pop(SpecWatch.name)
    return SimpleNamespace(bucket=bucket, warehouse=warehouse, local=local, first=first, again=again,
                           logs=captured.getvalue(), watch=watched, table=f"{warehouse}/lineitem")


def test_pipeline_on_s3_equals_the_pandas_oracle(s3_run):
    expected, raw_rows = _oracle(s3_run.local)
    loc = Location(s3_run.table)
    table = DeltaTable(loc.url, storage_options=loc.delta_options).to_pandas()

    assert s3_run.first.status == "committed" and s3_run.first.version == 1
    assert s3_run.first.rows_in == raw_rows and s3_run.first.inserted == len(expected) == len(table)
    pd.testing.assert_frame_equal(_rows(table), _rows(expected), check_dtype=False)
    assert (table["ship_month"] == pd.to_datetime(table["l_shipdate"]).dt.strftime("%Y-%m")).all()
    assert not table.duplicated(KEYS).any()


def test_rerun_on_s3_is_skipped(s3_run):
    loc = Location(s3_run.table)
    assert s3_run.again.status == "skipped"
    assert s3_run.again.app_id == s3_run.first.app_id
    assert DeltaTable(loc.url, storage_options=loc.delta_options).version() == s3_run.first.version


def test_canary_is_in_no_object_of_the_bucket(s3_run, s3_env, read_bucket):
    objects = read_bucket(s3_run.bucket)
    log_files = {k: v for k, v in objects.items() if "/_delta_log/" in k}
    assert len(log_files) >= 2  # create + commit: the check below reads real commits
    commit = log_files["wh/lineitem/_delta_log/00000000000000000001.json"].decode()
    assert f"s3://{s3_run.bucket}/wh/raw/lineitem" in commit  # the lineage names the input ...
    for key, data in objects.items():
        assert s3_env.secret.encode() not in data, key  # ... but never the credentials
        assert s3_env.key_id.encode() not in data, key


def test_canary_is_in_no_log_record(s3_run, s3_env):
    assert "already committed" in s3_run.logs  # the rerun's etl record was captured
    assert s3_env.secret not in s3_run.logs
    etl_lines = "\n".join(line for line in s3_run.logs.splitlines() if line.startswith("etl"))
    assert s3_env.key_id not in etl_lines


def test_canary_is_in_no_result(s3_run, s3_env):
    for result in (s3_run.first, s3_run.again):
        for text in (repr(result), str(result), result._repr_html_(), json.dumps(result.to_dict(), default=str)):
            assert s3_env.secret not in text and s3_env.key_id not in text
        assert result.table == s3_run.table


def test_canary_is_in_no_task_graph(s3_run, s3_env, dask_client):
    assert len(s3_run.watch.seen) > 20  # every task of both runs was pickled and searched
    assert s3_run.watch.leaks == []

    pipeline = etl.load_pipeline("tpch_lineitem_daily")
    plan = make_plan(pipeline, warehouse=s3_run.warehouse, params={"demo_orders": 2000})
    frame = build_output(plan)
    for blob in (cloudpickle.dumps(dict(frame.__dask_graph__())), cloudpickle.dumps(plan.target),
                 cloudpickle.dumps(plan.sources)):
        assert s3_env.secret.encode() not in blob and s3_env.key_id.encode() not in blob
    assert isinstance(frame, dd.DataFrame) and len(frame.__dask_graph__()) > 0


def _missing_source_pipeline(url: str, storage_options=None, fmt: str = "parquet"):
    @etl.pipeline(name="missing_on_s3", sources={"x": etl.Source(url, fmt, storage_options=storage_options)},
                  target=etl.Target.append("out"), schema=etl.Schema({"a": "int64"}))
    def missing_on_s3(x):
        return x

    return missing_on_s3


@pytest.mark.parametrize("case", ["env-parquet", "explicit-parquet", "explicit-delta-missing-table",
                                  "explicit-delta-missing-bucket"])
def test_failing_run_on_s3_leaks_no_secret(case, bucket, s3_env, moto_endpoint, dask_client):
    explicit = {"endpoint_url": moto_endpoint, "key": s3_env.key_id, "secret": s3_env.secret}
    url, so, fmt = {
        "env-parquet": (f"s3://{bucket}/raw/nothing/*.parquet", None, "parquet"),
        "explicit-parquet": (f"s3://{bucket}/raw/nothing/*.parquet", explicit, "parquet"),
        "explicit-delta-missing-table": (f"s3://{bucket}/no_table", explicit, "delta"),
        "explicit-delta-missing-bucket": ("s3://etl-no-such-bucket/t", explicit, "delta"),
    }[case]
    pipe = _missing_source_pipeline(url, so, fmt)

    with pytest.raises(SourceError) as info:
        etl.run(pipe, warehouse=f"s3://{bucket}/wh", client=dask_client)

    text = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert url.split("*")[0].rstrip("/") in str(info.value)  # the message names the input ...
    assert s3_env.secret not in text and s3_env.key_id not in text  # ... and nothing secret
