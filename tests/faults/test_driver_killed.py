"""Issue 4, faults 2 and 3: the driver process SIGKILLed just before and just after its Delta commit.

Each killed driver is a real process (``python -m tests.faults._driver``) on the
session's cluster; its hook kills it at ``before_commit`` (files staged, nothing
committed) or ``after_commit`` (committed, nothing recorded). The same run is
then made again, in process (sparing a second interpreter start). The killed
drivers get ``ETL_LEASE_SECONDS=2``, so that a dead driver's hold on its batch
in the ledger ends within seconds."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

import numpy as np
from click.testing import CliRunner
from deltalake import DeltaTable

import etl
from etl.cli import cli
from etl.commit.cleanup import LEASE_DIR, find_orphans, referenced_paths, remove_orphans
from etl.commit.files import staged_run_id
from etl.io.storage import Location
from etl.ledger.store import Ledger
from tests.core.helpers import data_files_on_disk, live_files, make_pipeline, oracle, random_batch, write_batch
from tests.faults._faults import assert_each_once, assert_sound, data_commits, driver, wait_for

DAYS = ("2026-01-01", "2026-01-02")
SHORT_LEASE = {"ETL_LEASE_SECONDS": "2"}
DAY = 86_400


def _setup(client, warehouse, seed):
    rng = np.random.default_rng(seed)
    b1 = random_batch(rng, 100, key_space=40)
    b2 = random_batch(rng, 100, key_space=40, ts0=10_000)
    write_batch(warehouse, DAYS[0], b1)
    write_batch(warehouse, DAYS[1], b2)
    etl.run(make_pipeline(), date=DAYS[0], warehouse=warehouse, client=client)
    return b1, b2


def _killed_run(url: str) -> str:
    """The run id of the killed driver, from the lease it could not release."""
    leases = os.listdir(os.path.join(url, LEASE_DIR))
    assert len(leases) == 1, leases
    return leases[0].removesuffix(".json")


def test_driver_killed_before_commit_then_same_command_commits_once(client, warehouse):
    url, root = f"{warehouse}/t", Location(f"{warehouse}/t")
    b1, b2 = _setup(client, warehouse, 21)
    version, files = DeltaTable(url).version(), live_files(url)

    code, _, err = driver(warehouse, DAYS[1], client.scheduler.address, "before_commit", SHORT_LEASE)
    assert code == -9, err[-3000:]  # SIGKILLed by its own hook
    run_id = _killed_run(url)
    staged = {f for f in data_files_on_disk(url) if staged_run_id(f) == run_id}
    assert staged, "the killed driver staged nothing: the fault hit too early"
    assert DeltaTable(url).version() == version and live_files(url) == files  # nothing committed
    assert not staged & referenced_paths(root)
    # its lease (24 h, no heartbeat) protects its files from clean ...
    assert not {o.path for o in find_orphans(root, grace_seconds=0)} & staged
    # ... and once it has expired they are exactly the orphans
    assert {o.path for o in find_orphans(root, grace_seconds=0, now=time.time() + 2 * DAY)} == staged

    ledger = Ledger(warehouse)
    state = ledger.state("t_merge", DAYS[1])
    assert (state.state, state.run_id) == ("running", run_id)  # the dead driver still holds the batch
    wait_for(lambda: ledger.state("t_merge", DAYS[1]).is_stale(datetime.now(timezone.utc)),
             "the killed driver's ledger lease to run out")
    assert etl.run(make_pipeline(), date=DAYS[1], warehouse=warehouse, client=client).status == "committed"

    assert_sound(url, oracle([b1, b2]))
    assert_each_once(url, DAYS)
    assert ledger.state("t_merge", DAYS[1]).state == "succeeded"
    assert not staged & live_files(url) and not staged & referenced_paths(root)
    orphans = find_orphans(root, grace_seconds=0, now=time.time() + 2 * DAY)
    assert {o.path for o in orphans} == staged  # the rerun cleaned after itself; only the dead run's remain
    assert remove_orphans(root, orphans) == len(staged)
    assert data_files_on_disk(url) <= referenced_paths(root)
    assert_sound(url, oracle([b1, b2]))


def test_driver_killed_after_commit_then_rerun_skips_and_repairs_the_ledger(client, warehouse):
    url, root = f"{warehouse}/t", Location(f"{warehouse}/t")
    b1, b2 = _setup(client, warehouse, 31)
    version = DeltaTable(url).version()

    code, _, err = driver(warehouse, DAYS[1], client.scheduler.address, "after_commit", SHORT_LEASE)
    assert code == -9, err[-3000:]  # SIGKILLed by its own hook
    run_id = _killed_run(url)
    assert DeltaTable(url).version() == version + 1  # the commit landed ...
    ledger = Ledger(warehouse)
    assert ledger.state("t_merge", DAYS[1]).state == "running"  # ... but the ledger never heard of it
    committed = live_files(url)
    # the dead run's files are live: no lease expiry makes them orphans
    assert not {o.path for o in find_orphans(root, grace_seconds=0, now=time.time() + 2 * DAY)} & committed

    # No wait for the lease: a rerun that finds its batch committed takes the batch over in the ledger itself.
    again = etl.run(make_pipeline(), date=DAYS[1], warehouse=warehouse, client=client)
    assert (again.status, again.version) == ("skipped", version + 1)

    assert_sound(url, oracle([b1, b2]))
    assert_each_once(url, DAYS)
    assert DeltaTable(url).version() == version + 1
    [(app_id, n)] = [(a, n) for a, n in data_commits(url).items() if f":{DAYS[1]}:" in a]
    state = ledger.state("t_merge", DAYS[1])
    assert (state.state, state.app_id, state.version) == ("succeeded", app_id, version + 1)
    assert run_id != state.run_id
    out = CliRunner().invoke(cli, ["clean", "t", "--warehouse", warehouse, "--grace", "0"])
    assert out.exit_code == 0, out.output
    assert live_files(url) == committed
    assert_sound(url, oracle([b1, b2]))
