"""Vacuum: the retention rule, and real vacuums that must never delete a file of a run in flight."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from etl import ConfigError
from etl.maintain import resolve
from etl.maintain.vacuum import LEASE_MARGIN_SECONDS, decide_retention, table_retention_hours

LIVE, DEAD = "r20260101T000000-1111aaaa", "r20260101T000000-2222bbbb"
HOUR = 3600.0


def test_retention_rule():
    now = 1_000_000.0
    decide = lambda h, **kw: decide_retention(h, table_hours=kw.pop("table", 168), now=now,  # noqa: E731
                                              lease_starts=kw.pop("leases", {}), **kw)
    assert decide(None).hours == 168 and decide(None, table=36).hours == 36
    assert decide(5).hours == 5 and decide(5).reasons == ()
    with pytest.raises(ConfigError, match="below the 1 h floor.*--force-retention"):
        decide(0)
    assert decide(0, force=True).hours == 0
    # a live lease raises it whatever force says: its age plus the margin, in whole hours
    assert decide(0, force=True, leases={LIVE: now - 2 * HOUR}).hours == 3
    assert decide(0, force=True, leases={LIVE: now - 2 * HOUR, "r2": now - 60}).reasons[0].startswith(
        f"raised to 3 h: run {LIVE}")
    assert decide(2, force=True, leases={LIVE: now - (2 * HOUR - LEASE_MARGIN_SECONDS) + 1}).hours == 2
    assert decide(2, force=True, leases={LIVE: now - (2 * HOUR - LEASE_MARGIN_SECONDS) - 1}).hours == 3
    assert decide(200, leases={LIVE: now - 2 * HOUR}).hours == 200
    # a full vacuum (unreferenced files too) never goes below an hour: a starting run's files are young
    assert decide(0, force=True, full=True).hours == 1
    with pytest.raises(ConfigError):
        decide(-1, force=True)


def test_table_retention_from_configuration():
    assert table_retention_hours({"delta.deletedFileRetentionDuration": "interval 36 hours"}) == 36
    assert table_retention_hours({"delta.deletedFileRetentionDuration": "interval 90 minutes"}) == 2
    assert table_retention_hours({"delta.deletedFileRetentionDuration": "interval 1 week"}) == 168
    assert table_retention_hours({"delta.deletedFileRetentionDuration": "soon"}) == 168


def _stage(url: str, run_id: str, age_hours: float, now: float) -> Path:
    """A file staged by ``run_id`` (named as workers name them) that no commit references."""
    source = Path(url) / DeltaTable(url).get_add_actions(flatten=True).column("path")[0].as_py()
    target = source.parent / f"part-{run_id}-{os.urandom(8).hex()}.snappy.parquet"
    shutil.copyfile(source, target)
    os.utime(target, (now - age_hours * HOUR,) * 2)
    return target


def _lease(url: str, run_id: str, started: float) -> Path:
    path = Path(url) / "_etl" / "runs" / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "started": started, "expires": time.time() + 24 * HOUR}))
    return path


def _removed_since_v1(url: str) -> list[Path]:
    """Data files of version 1 that version 2 removed (tombstones, minutes old)."""
    v1 = set(DeltaTable(url, version=1).get_add_actions(flatten=True).column("path").to_pylist())
    v2 = set(DeltaTable(url).get_add_actions(flatten=True).column("path").to_pylist())
    return sorted(Path(url) / p for p in v1 - v2)


def _content(url: str, version: int | None = None) -> pd.DataFrame:
    df = DeltaTable(url, version=version).to_pandas()
    return df.sort_values(["l_orderkey", "l_linenumber"]).reset_index(drop=True)


def test_forced_full_vacuum_to_zero_keeps_every_file_of_a_live_run(lineitem, etl_cli):
    now, url = time.time(), lineitem.url
    lease = _lease(url, LIVE, started=now - 2 * HOUR)
    live_old = _stage(url, LIVE, 5, now)  # older than its lease (a skewed clock): caught by the file check
    live_young = _stage(url, LIVE, 1, now)  # within the lease: covered by the retention raised past it
    dead = _stage(url, DEAD, 10, now)  # left by a killed run: the only thing to delete
    tombstones = _removed_since_v1(url)
    before, version = _content(url), DeltaTable(url).version()

    out = etl_cli("vacuum", "lineitem", "--warehouse", lineitem.warehouse, "--retention-hours", "0",
                  "--force-retention", "--full", "--json")

    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["files"] == [str(dead.relative_to(url))]
    assert not dead.exists()
    assert live_old.exists() and live_young.exists() and lease.exists()
    assert tombstones and all(p.exists() for p in tombstones)  # a live run may be reading version 1
    assert d["retention"]["hours"] == 6 and d["kept_for_runs"] == [LIVE]
    assert any(LIVE in r for r in d["retention"]["reasons"])
    pd.testing.assert_frame_equal(_content(url), before)
    end, start = DeltaTable(url).history(2)
    assert (start["operation"], end["operation"]) == ("VACUUM START", "VACUUM END")
    assert end["etl.operation"] == start["etl.operation"] == "VACUUM" and end["etl.run_id"] == d["run_id"]
    assert json.loads(end["etl.params"])["live_runs"] == [LIVE] and end["version"] == version + 2 == d["version"]


def test_vacuum_deletes_old_versions_files_but_not_while_a_run_is_in_flight(lineitem, etl_cli):
    now, url, wh = time.time(), lineitem.url, lineitem.warehouse
    dead = _stage(url, DEAD, 10, now)
    tombstones = _removed_since_v1(url)
    before, version = _content(url), DeltaTable(url).version()
    args = ("vacuum", "lineitem", "--warehouse", wh, "--retention-hours", "0", "--force-retention", "--json")

    lease = _lease(url, LIVE, started=now - 2 * HOUR)  # a run in flight may read version 1's files
    guarded = json.loads(etl_cli(*args, "--dry-run").stdout)
    assert guarded["files"] == [] and guarded["retention"]["hours"] == 3
    lease.unlink()

    dry = json.loads(etl_cli(*args, "--dry-run").stdout)
    assert dry["files"] == sorted(str(p.relative_to(url)) for p in tombstones)
    assert all(p.exists() for p in tombstones) and DeltaTable(url).version() == version  # nothing done

    out = etl_cli(*args)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["files"] == dry["files"]
    assert not any(p.exists() for p in tombstones)
    assert dead.exists()  # without --full, files no commit references are never touched
    pd.testing.assert_frame_equal(_content(url), before)
    with pytest.raises(Exception):  # version 1 lost its files: time travel before the retention ends
        _content(url, version=1)
    assert DeltaTable(url).history(1)[0]["etl.operation"] == "VACUUM"


def test_short_retention_without_force_is_refused_and_changes_nothing(lineitem, etl_cli):
    url = lineitem.url
    tombstones, version = _removed_since_v1(url), DeltaTable(url).version()
    out = etl_cli("vacuum", "lineitem", "--warehouse", lineitem.warehouse, "--retention-hours", "0")
    assert out.exit_code == 3
    assert "--force-retention" in out.output
    assert all(p.exists() for p in tombstones) and DeltaTable(url).version() == version


def test_a_run_that_takes_its_lease_while_vacuum_plans_is_protected(lineitem, monkeypatch):
    module = importlib.import_module("etl.maintain.vacuum")  # the package exports a function of that name
    url, real, calls = lineitem.url, module.live_lease_starts, []

    def leases_then_a_new_run(loc, now=None):
        calls.append(loc)
        if len(calls) == 2:  # after the first plan: a run starts (and its snapshot may hold version 1)
            _lease(url, LIVE, started=time.time() - 2 * HOUR)
        return real(loc, now)

    monkeypatch.setattr(module, "live_lease_starts", leases_then_a_new_run)
    tombstones = _removed_since_v1(url)
    result = module.vacuum(resolve("lineitem", lineitem.warehouse), retention_hours=0, force=True)
    assert result.retention.hours == 3 and result.kept_for_runs == [LIVE] and result.files == []
    assert all(p.exists() for p in tombstones)
