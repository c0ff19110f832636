"""A TLS cluster started with cluster/hosts scripts runs the example pipeline, on its own workers."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from distributed import Client, Security, get_task_stream

import etl
from tests.cluster.helpers import MODULE, REPO, assert_table_matches_oracle, free_port, make_certs


def client_security(certs) -> Security:
    return Security(tls_ca_file=str(certs / "ca.pem"), tls_client_cert=str(certs / "client.pem"),
                    tls_client_key=str(certs / "client-key.pem"), require_encryption=True)


def wait_for_line(path: str, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in Path(path).read_text():
        assert time.monotonic() < deadline, f"{text!r} not in {path}:\n{Path(path).read_text()[-2000:]}"
        time.sleep(0.1)


@pytest.mark.cluster
def test_pipeline_runs_on_tls_cluster_of_host_scripts(tmp_path, hosts, empty_dir):
    certs = make_certs(tmp_path / "tls")
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    hosts.start("scheduler.sh", empty_dir, ETL_TLS_DIR=str(certs), ETL_SCHEDULER_HOST="127.0.0.1",
                ETL_SCHEDULER_PORT=str(port), ETL_DASHBOARD_ADDRESS="127.0.0.1:0")
    hosts.start("worker.sh", empty_dir, ETL_TLS_DIR=str(certs), ETL_SCHEDULER=address, ETL_NWORKERS="2",
                ETL_NTHREADS="1", ETL_MEMORY_LIMIT="1GiB", ETL_WORKER_HOST="127.0.0.1")
    warehouse = str(tmp_path / "warehouse")
    pipe = etl.load_pipeline("tpch_lineitem_daily", [str(REPO / "pipelines")])

    with hosts.client(address, client_security(certs), n_workers=2) as client:
        workers = client.scheduler_info()["workers"]
        assert all(a.startswith("tls://127.0.0.1:") for a in workers), workers
        assert [(w["nthreads"], w["memory_limit"]) for w in workers.values()] == [(1, 2**30)] * 2

        with get_task_stream(client) as stream:
            result = etl.run(pipe, client=client, warehouse=warehouse, params={"demo_orders": 2000})
        assert result.status == "committed", result
        ran_on = {t["worker"] for t in stream.data}
        assert ran_on == set(workers), f"tasks ran on {ran_on}, the cluster's workers are {set(workers)}"
        assert client.run(lambda: MODULE in sys.modules) == {a: True for a in workers}

    assert_table_matches_oracle(warehouse)


@pytest.mark.cluster
def test_tls_scheduler_admits_only_certificates_of_its_ca(tmp_path, hosts, empty_dir):
    certs = make_certs(tmp_path / "tls")
    strangers = make_certs(tmp_path / "other-ca")
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    scheduler = hosts.start("scheduler.sh", empty_dir, ETL_TLS_DIR=str(certs), ETL_SCHEDULER_HOST="127.0.0.1",
                            ETL_SCHEDULER_PORT=str(port), ETL_DASHBOARD_ADDRESS="127.0.0.1:0")
    with hosts.client(address, client_security(certs), n_workers=0) as client:
        assert client.scheduler_info()["address"] == address

    foreign_client = Security(tls_ca_file=str(certs / "ca.pem"), tls_client_cert=str(strangers / "client.pem"),
                              tls_client_key=str(strangers / "client-key.pem"), require_encryption=True)
    with pytest.raises(OSError):  # the scheduler rejects a client certificate its CA did not sign
        Client(address, security=foreign_client, timeout="2s")
    wait_for_line(scheduler.log_path, "certificate verify failed")
    with pytest.raises(OSError, match="TLS certificate does not match"):  # and the client a scheduler of another CA
        Client(address, security=client_security(strangers), timeout="2s")
    with pytest.raises(OSError):  # no plain TCP on a TLS port
        Client(f"tcp://127.0.0.1:{port}", timeout="2s")
