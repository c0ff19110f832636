"""The runner refuses unsafe stores before writing; declarations never show credentials."""

import pytest

import etl
from etl.errors import UnsafeStoreError


def test_run_refuses_a_store_that_ignores_conditional_puts(bucket, s3_proxy, dask_client, read_bucket, s3_client):
    proxy = s3_proxy(strip=True)
    s3_client.put_object(Bucket=bucket, Key="wh/raw/x.parquet", Body=b"")

    @etl.pipeline(name="to_unsafe_store", sources={"x": etl.Source.parquet("{warehouse}/raw/*.parquet")},
                  target=etl.Target.append("out", storage_options={"endpoint_url": proxy.endpoint}),
                  schema=etl.Schema({"a": "int64"}))
    def to_unsafe_store(x):
        return x

    with pytest.raises(UnsafeStoreError, match="ETL_ALLOW_UNSAFE_STORE=1"):
        etl.run(to_unsafe_store, warehouse=f"s3://{bucket}/wh", client=dask_client)
    assert not [k for k in read_bucket(bucket) if k.startswith("wh/out/")]


def test_source_and_target_repr_hide_storage_options():
    so = {"key": "AKIAXX", "secret": "very-secret-value"}
    text = repr(etl.Source.parquet("s3://b/x", storage_options=so)) + repr(etl.Target.append("t", storage_options=so))
    assert "very-secret-value" not in text and "AKIAXX" not in text
