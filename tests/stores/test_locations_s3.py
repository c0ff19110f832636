"""Locations against a real S3 server: one options dict for both libraries, fresh listings, memory://."""

from __future__ import annotations

import io

import dask
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

import etl
from etl.commit.files import write_file
from etl.commit.table import ensure_table, snapshot
from etl.commit.transaction import Staged, commit
from etl.errors import ConfigError
from etl.io import sources
from etl.io.storage import Location
from etl.policy.retry import RetryPolicy

SCHEMA = pa.schema([pa.field("a", pa.int64()), pa.field("b", pa.string())])


def _resolved(url: str, storage_options=None):
    """The source at ``url`` as a plan resolves it (its files pinned), via the public API."""

    @etl.pipeline(name="read_only", sources={"x": etl.Source.parquet(url, storage_options=storage_options)},
                  target=etl.Target.append("/tmp/unused"), schema=etl.Schema({"a": "int64"}))
    def read_only(x):
        return x

    return etl.plan(read_only, touched=False).sources["x"]


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
    return buf.getvalue()


@pytest.mark.parametrize("form", ["fsspec", "deltalake"])
def test_one_options_dict_serves_fsspec_and_deltalake(form, bucket, moto_endpoint, s3_env, monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.delenv(name)  # nothing from the environment: the options alone must reach the store
    opts = ({"endpoint_url": moto_endpoint, "key": s3_env.key_id, "secret": s3_env.secret,
             "client_kwargs": {"region_name": "us-east-1"}} if form == "fsspec" else
            {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": s3_env.key_id,
             "AWS_SECRET_ACCESS_KEY": s3_env.secret, "AWS_REGION": "us-east-1"})
    raw = Location(f"s3://{bucket}/raw", opts)
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    raw.fs.pipe_file(f"{raw.path}/part-0.parquet", _parquet(frame))

    rs = _resolved(f"s3://{bucket}/raw/*.parquet", opts)
    with dask.config.set(scheduler="sync"):
        got = sources.read(rs).compute()
    pd.testing.assert_frame_equal(got.reset_index(drop=True), frame, check_dtype=False)

    table = Location(f"s3://{bucket}/wh/t", opts)
    dt = ensure_table(table, SCHEMA, [])
    add = write_file(table, pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False), {}, "r1")
    out = commit(table, SCHEMA, [], "etl:test:one", {"etl.app_id": "etl:test:one"},
                 Staged([add], [], snapshot(dt)), lambda s, now: s, RetryPolicy(max_attempts=2))
    assert out.committed and out.version == 1
    back = DeltaTable(table.url, storage_options=table.delta_options).to_pandas().sort_values("a")
    pd.testing.assert_frame_equal(back.reset_index(drop=True), frame, check_dtype=False)
    assert s3_env.secret not in repr(table) + str(table) + repr(rs)


def test_listings_see_files_written_by_other_processes(bucket, s3_client):
    loc = Location(f"s3://{bucket}/raw")
    s3_client.put_object(Bucket=bucket, Key="raw/ds=1/a.parquet", Body=_parquet(pd.DataFrame({"a": [1]})))
    before = _resolved(f"s3://{bucket}/raw/ds=*/*.parquet")
    assert loc.fs.ls(f"{bucket}/raw/ds=1") == [f"{bucket}/raw/ds=1/a.parquet"]

    s3_client.put_object(Bucket=bucket, Key="raw/ds=1/b.parquet", Body=_parquet(pd.DataFrame({"a": [2]})))
    after = _resolved(f"s3://{bucket}/raw/ds=*/*.parquet")

    assert len(after.files) == 2 and after.fingerprint() != before.fingerprint()  # a stale cache would say 1
    assert loc.fs.exists(f"{bucket}/raw/ds=1/b.parquet")


def test_folder_and_recursive_glob_sources_list_every_file_on_s3(bucket, s3_client):
    """s3fs lists a folder or a ``**`` glob flat and refuses the walk's ``on_error``: both still list."""
    for key in ("deep/ds=1/a.parquet", "deep/ds=2/x/b.parquet", "deep/_SUCCESS"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=_parquet(pd.DataFrame({"a": [1]})))
    want = [f"s3://{bucket}/deep/ds=1/a.parquet", f"s3://{bucket}/deep/ds=2/x/b.parquet"]
    assert [f[0] for f in _resolved(f"s3://{bucket}/deep").files] == want
    assert [f[0] for f in _resolved(f"s3://{bucket}/deep/**/*.parquet").files] == want
    assert [f[0] for f in _resolved(f"s3://{bucket}/deep/ds=*/*.parquet").files] == want[:1]


def test_memory_sources_work_and_memory_delta_targets_are_refused():
    loc = Location("memory://etl-test-mem/raw")
    frame = pd.DataFrame({"a": [1, 2], "b": ["p", "q"]})
    loc.fs.pipe_file(f"{loc.path}/x.parquet", _parquet(frame))
    rs = _resolved("memory://etl-test-mem/raw/*.parquet")
    with dask.config.set(scheduler="sync"):
        pd.testing.assert_frame_equal(sources.read(rs).compute().reset_index(drop=True), frame, check_dtype=False)

    @etl.pipeline(name="mem_to_mem", sources={"m": etl.Source.parquet("memory://etl-test-mem/raw/*.parquet")},
                  target=etl.Target.append("memory://etl-test-mem/table"), schema=etl.Schema({"a": "int64",
                                                                                            "b": "string"}))
    def mem_to_mem(m):
        return m

    with pytest.raises(ConfigError, match="Delta tables on memory:// are not supported"):
        etl.run(mem_to_mem)
