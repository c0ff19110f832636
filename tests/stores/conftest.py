"""A real S3-compatible server for the object-store tests, and a proxy that breaks it on purpose.

Both run in their own processes (see ``servers.py`` for why).

- ``moto_endpoint``: moto's S3 server on 127.0.0.1 (a free port), for this package.
- ``s3_env``: the AWS environment pointing at it, with canary credentials
  (``CANARY-SECRET-<random>``) that must never show up anywhere. Set before the
  Dask cluster starts, so the worker processes inherit it. ``AWS_ALLOW_HTTP`` is
  deliberately not set: the framework must derive it for the http endpoint.
- ``bucket``: a fresh bucket per test.
- ``dask_client``: a LocalCluster (2 worker processes) for this package.
- ``s3_proxy``: starts an HTTP proxy in front of moto that logs every request
  and, with ``strip=True``, drops ``If-None-Match``/``If-Match``: a store that
  ignores conditional puts, for real.
- ``read_bucket``: every object of a bucket, for leak checks.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@dataclass(frozen=True)
class Canary:
    key_id: str
    secret: str


def _spawn(args: list[str]) -> tuple[subprocess.Popen, int]:
    """Start ``servers.py args`` and return it with the port it printed once listening."""
    proc = subprocess.Popen([sys.executable, str(HERE / "servers.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        _stop(proc)
        raise RuntimeError(f"test server {args[0]} did not start (printed {line!r})")
    return proc, int(line)


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)
    proc.stdout.close()


@pytest.fixture(scope="package")
def moto_endpoint():
    proc, port = _spawn(["moto"])
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


@pytest.fixture(scope="package")
def s3_env(moto_endpoint):
    canary = Canary(key_id=f"AKIACANARY{secrets.token_hex(5).upper()}",
                    secret=f"CANARY-SECRET-{secrets.token_hex(12)}")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("AWS_") or name in ("ETL_ALLOW_UNSAFE_STORE", "ETL_WAREHOUSE"):
                mp.delenv(name)
        mp.setenv("AWS_ACCESS_KEY_ID", canary.key_id)
        mp.setenv("AWS_SECRET_ACCESS_KEY", canary.secret)
        mp.setenv("AWS_ENDPOINT_URL", moto_endpoint)
        mp.setenv("AWS_REGION", "us-east-1")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("ETL_PIPELINES", str(REPO / "pipelines"))
        yield canary


@pytest.fixture(scope="package")
def s3_client(s3_env, moto_endpoint):
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3_client) -> str:
    name = f"etl-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="package")
def dask_cluster(s3_env):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster:
        yield cluster


@pytest.fixture(scope="package")
def dask_client(dask_cluster):
    from distributed import Client

    with Client(dask_cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def read_bucket(s3_client):
    """``read_bucket(name)`` -> {key: bytes} of every object in the bucket."""

    def read(name: str) -> dict[str, bytes]:
        out = {}
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = s3_client.get_object(Bucket=name, Key=obj["Key"])["Body"].read()
        return out

    return read


# ------------------------------------------------------------------ the proxy

@dataclass
class S3Proxy:
    """A proxy process in front of moto; ``requests`` reads its log."""

    endpoint: str
    logfile: Path

    @property
    def requests(self) -> list[tuple]:
        """Every request so far: (method, path, If-None-Match header, status)."""
        lines = self.logfile.read_text().splitlines() if self.logfile.exists() else []
        return [tuple(json.loads(line)) for line in lines]


@pytest.fixture
def s3_proxy(moto_endpoint, tmp_path):
    """``s3_proxy(strip=False)`` -> a running :class:`S3Proxy` (its own process) in front of moto."""
    procs = []

    def start(strip: bool = False) -> S3Proxy:
        log = tmp_path / f"proxy-{len(procs)}.jsonl"
        args = ["proxy", moto_endpoint.split("://", 1)[1], *(["--strip"] if strip else []), str(log)]
        proc, port = _spawn(args)
        procs.append(proc)
        return S3Proxy(f"http://127.0.0.1:{port}", log)

    yield start
    for proc in procs:
        _stop(proc)
