"""Real Dask hosts for the cluster tests (the scripts of ``cluster/hosts`` on loopback) and a pandas oracle."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
HOSTS = REPO / "cluster" / "hosts"
KEYS = ["l_orderkey", "l_linenumber"]
MODULE = "etlp_tpch_lineitem_daily"  # the import name the runner ships the example pipeline under


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_env(**settings: str) -> dict:
    """The environment of a host process: this one's without PYTHONPATH or stray etl/dask settings."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith(("ETL_", "DASK_"))}
    env.update(settings)
    return env


class Hosts:
    """Starts ``cluster/hosts`` scripts in their own process groups; stops every group at teardown."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen] = []

    def start(self, script: str, cwd: Path, **settings: str) -> subprocess.Popen:
        log = open(self.logs / f"{script}-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(["bash", str(HOSTS / script)], cwd=cwd, env=host_env(**settings),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_path = log.name
        log.close()
        self.procs.append(proc)
        return proc

    def output(self) -> str:
        return "\n".join(f"--- {p.log_path}\n{Path(p.log_path).read_text()[-3000:]}" for p in self.procs)

    @contextlib.contextmanager
    def client(self, address: str, security=None, n_workers: int = 2, timeout: float = 60):
        """A Client of the scheduler at ``address`` once ``n_workers`` workers joined (polled, with a deadline)."""
        from distributed import Client

        deadline = time.monotonic() + timeout
        host, port = address.split("://")[1].rsplit(":", 1)
        while True:  # until the scheduler listens, or a host process died
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"host process(es) exited early: {[p.args for p in dead]}\n{self.output()}")
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no scheduler at {address} after {timeout}s\n{self.output()}") from None
                time.sleep(0.1)
        client = Client(address, security=security, timeout="30s")
        try:
            if n_workers:
                client.wait_for_workers(n_workers, timeout=max(1.0, deadline - time.monotonic()))
            yield client
        finally:
            client.close()

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def make_certs(out: Path) -> Path:
    done = subprocess.run(["bash", str(HOSTS / "make-certs.sh"), str(out)], capture_output=True, text=True,
                          env=host_env())
    assert done.returncode == 0, done.stderr
    return out


def lineitem_oracle(warehouse: str) -> pd.DataFrame:
    """The table the example pipeline must produce, computed with pandas from the raw files it generated."""
    files = sorted(glob.glob(os.path.join(warehouse, "raw", "lineitem", "ds=*", "*.parquet")))
    assert len(files) >= 3, files
    raw = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    out = raw.sort_values("l_updated_at", kind="stable").drop_duplicates(KEYS, keep="last")
    out["l_net_revenue"] = np.round(out["l_extendedprice"] * (1 - out["l_discount"]) * (1 + out["l_tax"]), 2)
    out["ship_month"] = pd.to_datetime(out["l_shipdate"]).dt.strftime("%Y-%m")
    return canonical(out, columns=list(raw.columns) + ["l_net_revenue", "ship_month"])


def canonical(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = df[columns].copy()
    for c in ("l_shipdate", "l_commitdate", "l_receiptdate"):
        out[c] = pd.to_datetime(out[c]).dt.strftime("%Y-%m-%d")
    out["l_updated_at"] = pd.to_datetime(out["l_updated_at"], utc=True)
    for c in out.columns:
        if out[c].dtype == object or isinstance(out[c].dtype, pd.StringDtype):
            out[c] = out[c].astype(str)
    return out.sort_values(KEYS).reset_index(drop=True)


def assert_table_matches_oracle(warehouse: str) -> None:
    from deltalake import DeltaTable

    expected = lineitem_oracle(warehouse)
    table = canonical(DeltaTable(os.path.join(warehouse, "lineitem")).to_pandas(), list(expected.columns))
    assert len(table) == len(expected) > 0
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
