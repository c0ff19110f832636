"""Shared fixtures: a real LocalCluster, temporary warehouses, and small pipelines built in code."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("ETL_RETRY_BASE_DELAY", "0.01")
os.environ.setdefault("ETL_RETRY_MAX_DELAY", "0.2")


@pytest.fixture(scope="session")
def client():
    """A real distributed LocalCluster with two worker processes, shared by the session."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as c:
            yield c


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse"
    path.mkdir()
    return str(path)
