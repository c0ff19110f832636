"""Storage options: one dict for fsspec and deltalake, credentials never taken from the environment or shown."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from etl.errors import ConfigError
from etl.io.storage import Location, redact, redact_text, secret_values
from etl.io.stores import delta_options, fsspec_options, store_kind

ENV = {"AWS_ACCESS_KEY_ID": "AKIAENVKEY", "AWS_SECRET_ACCESS_KEY": "env-secret-value",
       "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "eu-west-1"}


@pytest.mark.parametrize("url, kind", [("s3://b/t", "s3"), ("s3a://b/t", "s3"), ("gs://b/t", "gcs"),
                                       ("abfss://c@a.dfs.core.windows.net/t", "azure"), ("memory://x", "memory"),
                                       ("/tmp/x", "local"), ("file:///tmp/x", "local"), ("C:/x", "local"),
                                       ("hdfs://n/x", "other")])
def test_store_kind(url, kind):
    assert store_kind(url) == kind


def test_s3_fsspec_form_maps_to_deltalake():
    opts = {"endpoint_url": "http://minio:9000", "key": "AK", "secret": "SK", "token": "ST",
            "client_kwargs": {"region_name": "eu-central-1"}, "requester_pays": True}
    assert delta_options("s3://b/t", opts, environ={}) == {
        "AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "ST",
        "AWS_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "eu-central-1", "AWS_ALLOW_HTTP": "true"}
    assert fsspec_options("s3://b/t", opts, environ={}) == {
        "endpoint_url": "http://minio:9000", "key": "AK", "secret": "SK", "token": "ST",
        "client_kwargs": {"region_name": "eu-central-1"}, "requester_pays": True, "use_listings_cache": False}


def test_s3_deltalake_form_maps_to_fsspec_and_keeps_delta_only_keys():
    opts = {"AWS_ENDPOINT_URL": "https://s3.example", "aws_region": "us-west-2", "AWS_ACCESS_KEY_ID": "AK",
            "AWS_SECRET_ACCESS_KEY": "SK", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "true",
            "conditional_put": "etag", "AWS_S3_LOCKING_PROVIDER": "dynamodb"}
    fs = fsspec_options("s3://b/t", opts, environ={})
    assert fs == {"endpoint_url": "https://s3.example", "key": "AK", "secret": "SK",
                  "client_kwargs": {"region_name": "us-west-2"}, "use_listings_cache": False,
                  "config_kwargs": {"s3": {"addressing_style": "virtual"}}}
    dl = delta_options("s3://b/t", opts, environ={})
    assert dl["conditional_put"] == "etag" and dl["AWS_S3_LOCKING_PROVIDER"] == "dynamodb"
    assert dl["AWS_ENDPOINT_URL"] == "https://s3.example" and "AWS_ALLOW_HTTP" not in dl  # https needs no opt-in
    assert dl["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] == "true" and dl["AWS_REGION"] == "us-west-2"


def test_s3_environment_gives_endpoint_region_and_http_but_never_credentials():
    dl = delta_options("s3://b/t", None, environ=ENV)
    assert dl == {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "eu-west-1", "AWS_ALLOW_HTTP": "true"}
    # botocore reads AWS_ENDPOINT_URL_S3 but delta-rs does not: it must be passed on explicitly
    assert delta_options("s3://b/t", None, environ={"AWS_ENDPOINT_URL_S3": "http://s3only:1"})[
        "AWS_ENDPOINT_URL"] == "http://s3only:1"
    fs = fsspec_options("s3://b/t", None, environ=ENV)
    assert fs == {"use_listings_cache": False, "client_kwargs": {"region_name": "eu-west-1"}}  # creds: botocore


def test_s3_anonymous_and_profile():
    assert delta_options("s3://b/t", {"anon": True, "profile": "p"}, environ={}) == {
        "AWS_SKIP_SIGNATURE": "true", "AWS_PROFILE": "p"}
    assert fsspec_options("s3://b/t", {"AWS_SKIP_SIGNATURE": "true"}, environ={})["anon"] is True


def test_gcs_mapping():
    key = {"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----abc", "client_email": "x@y"}
    assert delta_options("gs://b/t", {"token": key}, environ={})["GOOGLE_SERVICE_ACCOUNT_KEY"].startswith('{"type"')
    assert delta_options("gs://b/t", {"token": "/keys/sa.json", "project": "p"}, environ={}) == {
        "GOOGLE_APPLICATION_CREDENTIALS": "/keys/sa.json"}
    assert delta_options("gs://b/t", {"token": "anon"}, environ={}) == {"GOOGLE_SKIP_SIGNATURE": "true"}
    assert fsspec_options("gs://b/t", {"google_service_account_key": '{"a": 1}'}, environ={})["token"] == {"a": 1}
    assert fsspec_options("gs://b/t", {"GOOGLE_SERVICE_ACCOUNT": "/k.json"}, environ={})["token"] == "/k.json"


def test_azure_mapping_and_connection_string():
    conn = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;BlobEndpoint=https://acct.blob.x"
    dl = delta_options("abfs://c/t", {"connection_string": conn}, environ={})
    assert dl == {"AZURE_STORAGE_ACCOUNT_NAME": "acct", "AZURE_STORAGE_ACCOUNT_KEY": "c2VjcmV0",
                  "AZURE_STORAGE_ENDPOINT": "https://acct.blob.x"}
    fs = fsspec_options("abfs://c/t", {"AZURE_STORAGE_ACCOUNT_NAME": "acct", "azure_storage_sas_key": "sv=1&sig=2",
                                       "AZURE_STORAGE_CLIENT_SECRET": "cs"}, environ={})
    assert fs == {"account_name": "acct", "sas_token": "sv=1&sig=2", "client_secret": "cs", "use_listings_cache": False}


def test_memory_delta_is_refused_with_a_clear_error():
    loc = Location("memory://wh/table")
    assert loc.fsspec_options == {} and isinstance(loc.fs, MemoryFileSystem)  # fine as a file source
    with pytest.raises(ConfigError, match="Delta tables on memory:// are not supported.*local path"):
        loc.delta_options


def test_local_locations_are_unchanged():
    assert Location("file:///tmp/wh/").url == "/tmp/wh"
    assert Location("/tmp/wh").delta_options is None
    assert Location("/tmp/wh", {"a": 1}).delta_options == {"a": "1"}


def test_location_repr_and_pickles_hold_no_environment_secret(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    loc = Location("s3://bkt/wh")
    assert repr(loc) == "Location('s3://bkt/wh')" and str(loc) == "s3://bkt/wh"
    _ = loc.fs, loc.delta_options  # reading the environment must not store it on the Location
    for blob in (pickle.dumps(loc), cloudpickle.dumps(loc.join("t"))):
        assert b"env-secret-value" not in blob and b"AKIAENVKEY" not in blob


def test_explicit_secrets_are_never_shown():
    loc = Location("s3://user:pw@bkt/wh?X-Amz-Signature=zzz", {"key": "AKIAEXPLICIT", "secret": "explicit-secret"})
    shown = repr(loc) + str(loc) + repr(loc.join("t")) + str([loc])
    assert "explicit-secret" not in shown and "AKIAEXPLICIT" not in shown and "pw" not in shown
    assert "zzz" not in shown and "<2 keys hidden>" in repr(loc)


def test_redact_text_masks_option_and_environment_secrets(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-value")
    loc = Location("s3://bkt/wh", {"secret": "explicit-secret", "client_kwargs": {"aws_session_token": "tok-123"},
                                   "endpoint_url": "http://127.0.0.1:9000"})
    text = ("failed with explicit-secret / tok-123 / env-secret-value at s3://u:p@bkt/x "
            "and https://h/x?X-Amz-Credential=AK/1&X-Amz-Signature=abc&case=1")
    out = redact_text(text, loc.secrets)
    assert out == ("failed with *** / *** / *** at s3://bkt/x "
                   "and https://h/x?X-Amz-Credential=***&X-Amz-Signature=***&case=1")
    assert "http://127.0.0.1:9000" not in loc.secrets  # the endpoint is not a secret
    assert secret_values({"token": {"private_key": "pk-1234"}}, environ={}) == {"pk-1234"}
    assert redact("s3://k:s@bkt/p?sig=1") == "s3://bkt/p"
