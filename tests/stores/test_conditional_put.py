"""Safe concurrent commits on S3: the conditional-put probe, and writers racing for one table version.

The race is made deterministic with a barrier at the commit's ``before_commit``
hook: both writers have loaded the same snapshot, so both try to create the
same ``_delta_log/<version>.json``. On a store that honours ``If-None-Match``
one of them is refused and commits the next version; on a store that ignores
it (the stripping proxy) both "succeed" and one commit is silently lost.
"""

from __future__ import annotations

import json
import logging
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from etl.commit.files import write_file
from etl.commit.table import ensure_table, snapshot
from etl.commit.transaction import Staged, commit
from etl.errors import CommitError, UnsafeStoreError
from etl.io.storage import Location
from etl.io.stores import check_conditional_put
from etl.policy.retry import RetryPolicy
from etl.run.runner import new_run_id

SCHEMA = pa.schema([pa.field("batch", pa.string()), pa.field("n", pa.int64())])


def _commit_batch(loc: Location, app_id: str, barrier: threading.Barrier):
    """Stage one file and commit it; the first attempt waits at the barrier just before committing."""
    dt = DeltaTable(loc.url, storage_options=loc.delta_options)
    add = write_file(loc, pa.table({"batch": [app_id] * 3, "n": [1, 2, 3]}, schema=SCHEMA), {}, new_run_id())
    staged = Staged([add], [], snapshot(dt))
    waited = []

    def hook(point: str) -> None:
        if point == "before_commit" and not waited:
            waited.append(True)
            barrier.wait(timeout=60)

    return commit(loc, SCHEMA, [], app_id, {"etl.app_id": app_id}, staged, lambda s, now: s,
                  RetryPolicy(max_attempts=5, base_delay=0.0, max_delay=0.0), hook=hook, sleep=lambda s: None)


def _race(loc: Location, rounds: int) -> list[list]:
    """Two writers commit ``rounds`` batches each, racing for the same version every round."""
    race, done = threading.Barrier(2), threading.Barrier(2)

    def writer(name: str) -> list:
        out = []
        for r in range(rounds):
            out.append(_commit_batch(loc, f"etl:test:{name}-{r}", race))
            done.wait(timeout=60)  # rounds do not overlap
        return out

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(writer, ["a", "b"])
    return [[x, y] for x, y in zip(a, b)]


def _txn_versions(objects: dict[str, bytes]) -> dict[str, int]:
    """app id -> the table version whose commit file carries its ``txn`` action, read from the log itself."""
    out = {}
    for key, data in objects.items():
        if "/_delta_log/" in key and key.endswith(".json"):
            for line in data.decode().splitlines():
                txn = json.loads(line).get("txn") if line.strip() else None
                if txn:
                    out[txn["appId"]] = int(key.rsplit("/", 1)[-1][:-5])
    return out


def _landed(loc: Location) -> set[str]:
    dt = DeltaTable(loc.url, storage_options=loc.delta_options)
    return set(dt.to_pyarrow_table().column("batch").to_pylist())


def test_probe_passes_on_moto_with_two_real_conditional_puts(bucket, s3_proxy, read_bucket):
    proxy = s3_proxy(strip=False)  # logs, forwards everything
    loc = Location(f"s3://{bucket}/wh/table", {"endpoint_url": proxy.endpoint})

    check_conditional_put(loc)

    puts = [r for r in proxy.requests if r[0] == "PUT" and "/_etl/probe-" in r[1]]
    assert [(r[2], r[3]) for r in puts] == [("*", 200), ("*", 412)]
    assert puts[0][1] == puts[1][1] and puts[0][1].startswith(f"/{bucket}/wh/table/_etl/probe-")
    assert not [k for k in read_bucket(bucket) if "/_etl/" in k], "the probe object must be removed"
    seen = len(proxy.requests)
    check_conditional_put(loc.join("another_table_same_bucket"))
    assert len(proxy.requests) == seen, "the verdict is cached per endpoint and bucket"


def test_store_ignoring_conditional_puts_is_refused(bucket, s3_proxy, s3_env, monkeypatch):
    proxy = s3_proxy(strip=True)
    loc = Location(f"s3://{bucket}/wh/table", {"endpoint_url": proxy.endpoint})

    with pytest.raises(UnsafeStoreError) as info:
        check_conditional_put(loc)

    err = info.value
    msg = str(err)
    assert isinstance(err, CommitError) and err.exit_code == 8
    assert f"s3://{bucket}/wh/table" in msg and "If-None-Match" in msg and "ETL_ALLOW_UNSAFE_STORE=1" in msg
    assert "succeeded" in err.reason
    assert s3_env.secret not in msg and s3_env.key_id not in msg
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is UnsafeStoreError and again.bucket == bucket

    monkeypatch.setenv("ETL_ALLOW_UNSAFE_STORE", "1")  # explicit single-writer opt-out
    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = warnings.append
    logging.getLogger("etl.io.stores").addHandler(handler)
    try:
        check_conditional_put(loc)
    finally:
        logging.getLogger("etl.io.stores").removeHandler(handler)
    assert any("does not honour conditional puts" in r.getMessage() for r in warnings)


def test_the_stripping_proxy_really_loses_a_concurrent_commit(bucket, s3_proxy):
    """Control for the test above: the refused store is unsafe for real, not just by the probe's word."""
    proxy = s3_proxy(strip=True)
    loc = Location(f"s3://{bucket}/wh/table", {"endpoint_url": proxy.endpoint})
    ensure_table(loc, SCHEMA, [])

    (a, b), = _race(loc, rounds=1)

    assert a.committed and b.committed and a.attempts == b.attempts == 1  # both writers were told "committed"
    assert len(_landed(loc)) == 1  # ... but one commit was overwritten
    assert any(r[0] == "PUT" and r[1].endswith("_delta_log/00000000000000000001.json") for r in proxy.requests)


def test_two_writers_racing_on_s3_both_land(bucket, read_bucket):
    loc = Location(f"s3://{bucket}/wh/table")  # endpoint and credentials from the environment
    check_conditional_put(loc)
    ensure_table(loc, SCHEMA, [])

    rounds = _race(loc, rounds=3)

    for pair in rounds:
        assert all(o.committed for o in pair)
        assert sorted(o.attempts for o in pair) == [1, 2]  # one lost the race, was refused, and retried
    expected = {f"etl:test:{w}-{r}" for w in "ab" for r in range(3)}
    assert _landed(loc) == expected
    assert DeltaTable(loc.url, storage_options=loc.delta_options).version() == 6
    versions = _txn_versions(read_bucket(bucket))
    assert set(versions) == expected and sorted(versions.values()) == [1, 2, 3, 4, 5, 6]  # one version each
    # each writer's reported version is the one its txn landed in
    assert {f"etl:test:{w}-{r}": pair[i].version for r, pair in enumerate(rounds) for i, w in enumerate("ab")} == versions
