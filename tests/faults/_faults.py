"""Fault injection for the ``tests/faults`` suite: kill switches, the table invariants, polling.

Everything a worker process runs (:class:`KillAfterWrite`) lives here, in an
importable module, so that Dask ships it by reference. "Once" is
decided by a marker file created with ``O_EXCL``: whichever process creates it
first dies; every retry, on any worker, finds it and carries on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
from deltalake import DeltaTable
from distributed import WorkerPlugin

from tests.core.helpers import KEYS, live_files, table_frame

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ------------------------------------------------------------------ kill switches

def claim(marker: str) -> bool:
    """True for the first caller across all processes (creates ``marker`` with O_EXCL)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def suicide() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAfterWrite(WorkerPlugin):
    """Make the first staged-file write on the cluster kill its worker, right after the file is on disk.

    Wraps ``etl.commit.merge.write_file`` in every worker process (present and
    future): the file is written, then the worker dies before returning its
    path, which is the orphan a lost task leaves behind.
    """

    name = "etl-faults-kill-after-write"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def setup(self, worker) -> None:
        import etl.commit.merge as merge

        original = getattr(merge.write_file, "__wrapped__", merge.write_file)
        marker = self.marker

        def write_then_die(*args, **kwargs):
            out = original(*args, **kwargs)
            if claim(marker):
                with open(marker, "w") as f:  # what was written, for the test's assertions
                    json.dump({"pid": os.getpid(), "path": out["path"]}, f)
                suicide()
            return out

        write_then_die.__wrapped__ = original
        merge.write_file = write_then_die

    def teardown(self, worker) -> None:
        import etl.commit.merge as merge

        merge.write_file = getattr(merge.write_file, "__wrapped__", merge.write_file)


# ------------------------------------------------------------------ invariants

def missing_live_files(url: str) -> list[str]:
    """Paths the table's add actions reference that are not on disk (must always be empty)."""
    return sorted(p for p in live_files(url) if not os.path.exists(os.path.join(url, p)))


def assert_sound(url: str, expected: pd.DataFrame, keys=KEYS) -> pd.DataFrame:
    """The table equals the oracle, has no duplicate key, and references no missing file."""
    assert missing_live_files(url) == []
    got = table_frame(url, keys)
    assert not got.duplicated(keys).any(), got[got.duplicated(keys, keep=False)]
    pd.testing.assert_frame_equal(got, expected)
    return got


def data_commits(url: str) -> Counter:
    """How many commits carry each ``etl.app_id`` (every data commit of etl carries one)."""
    return Counter(h["etl.app_id"] for h in DeltaTable(url).history() if h.get("etl.app_id"))


def commits_by_batch(url: str) -> Counter:
    return Counter(h["etl.batch"] for h in DeltaTable(url).history() if h.get("etl.app_id"))


def assert_each_once(url: str, batches=None) -> None:
    """Every app id is in at most one commit; with ``batches``, each batch has exactly one data commit."""
    per_app = data_commits(url)
    assert all(n == 1 for n in per_app.values()), per_app
    if batches is not None:
        assert commits_by_batch(url) == Counter({b: 1 for b in batches})


# ------------------------------------------------------------------ processes and polling

def spawn(module: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    """Start ``python -m <module> ARGS`` from the repository root (a driver process of its own)."""
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    """Wait for a driver; a driver still running after ``timeout`` is killed and fails the test.

    A hung driver is a finding (e.g. threads deadlocked while building Dask graphs), never a
    reason to hang the suite.
    """
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"driver {proc.args[2:]} hung for {timeout}s and was killed; stderr:\n{err[-3000:]}")
    return proc.returncode, out, err


def driver(warehouse: str, date: str, scheduler: str, action: str, env: dict | None = None,
           timeout: float = 180) -> tuple[int, str, str]:
    """Run ``python -m tests.faults._driver`` (one batch) and wait for it: (returncode, stdout, stderr)."""
    return finish(spawn("tests.faults._driver", warehouse, date, scheduler, action, env=env), timeout)


def wait_for(predicate, what: str, timeout: float = 60.0, interval: float = 0.1):
    """Poll ``predicate()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def write_days(warehouse: str, n: int, seed: int, rows: int = 40, delete_frac: float = 0.0,
               first_day: int = 1) -> list[pd.DataFrame]:
    """One input batch per day from 2026-01-<first_day>, ts increasing with the day (upserts only by default)."""
    import numpy as np

    from tests.core.helpers import random_batch, write_batch

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        b = random_batch(rng, rows, key_space=60, ts0=(first_day + i) * 1000, delete_frac=delete_frac)
        write_batch(warehouse, day(first_day + i), b, files=1)
        out.append(b)
    return out


def day(i: int) -> str:
    return f"2026-01-{i:02d}"


def verify_report(warehouse: str, p):
    """What ``etl verify`` says about ``p``'s table and ledger."""
    from etl.ledger import read_table_facts, verify
    from etl.ledger.store import Ledger

    facts = read_table_facts(f"{warehouse}/{p.target.table}", columns=p.table_schema.names)
    report = verify(p.name, Ledger(warehouse).history(p.name), facts.history, table_fingerprint=facts.fingerprint)
    unchecked = [f.message for f in report.findings if f.kind == "unverifiable"]
    assert not unchecked, f"every commit must record its fingerprint delta: {unchecked}"
    return report
