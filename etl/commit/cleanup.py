"""Staged files that no commit references, and removing them safely.

A run leaves a lease file in ``<table>/_etl/runs/<run_id>.json`` while it may
still commit. A staged file may be deleted only when (a) no version in the
Delta log references it, (b) the run that staged it holds no live lease, and
(c) it is older than a grace period. So a file that a concurrent run may still
commit is never deleted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from deltalake import DeltaTable

from etl.commit.files import staged_run_id
from etl.io.storage import Location

LEASE_DIR = "_etl/runs"
DEFAULT_LEASE_SECONDS = 24 * 3600


def take_lease(root: Location, run_id: str, seconds: float = DEFAULT_LEASE_SECONDS) -> None:
    now = time.time()
    root.fs.makedirs(f"{root.path}/{LEASE_DIR}", exist_ok=True)
    root.fs.pipe_file(f"{root.path}/{LEASE_DIR}/{run_id}.json",
                      json.dumps({"run_id": run_id, "started": now, "expires": now + seconds}).encode())


def release_lease(root: Location, run_id: str) -> None:
    try:
        root.fs.rm_file(f"{root.path}/{LEASE_DIR}/{run_id}.json")
    except FileNotFoundError:
        pass


def live_lease_starts(root: Location, now: float | None = None) -> dict[str, float]:
    """``{run_id: started}`` of the runs holding a live (unexpired) lease on the table."""
    now = time.time() if now is None else now
    fs, out = root.fs, {}
    try:
        names = fs.ls(f"{root.path}/{LEASE_DIR}", detail=False)
    except FileNotFoundError:
        return out
    for name in names:
        try:
            lease = json.loads(fs.cat_file(name))
        except (FileNotFoundError, ValueError):
            continue
        if lease.get("expires", 0) > now and lease.get("run_id"):
            out[lease["run_id"]] = float(lease.get("started", now))
    return out


def live_leases(root: Location, now: float | None = None) -> set[str]:
    """The runs holding a live lease on the table: their staged files may still be committed."""
    return set(live_lease_starts(root, now))


def referenced_paths(root: Location) -> set[str]:
    """Every data file path any commit still in the log added (live or not)."""
    fs, paths = root.fs, set()
    for name in fs.glob(f"{root.path}/_delta_log/*.json"):
        for line in fs.cat_file(name).decode().splitlines():
            action = json.loads(line) if line.strip() else {}
            for kind in ("add", "remove"):
                if kind in action:
                    paths.add(action[kind]["path"])
    dt = DeltaTable(root.url, storage_options=root.delta_options)
    paths.update(dt.get_add_actions(flatten=True).column("path").to_pylist())
    return paths


@dataclass(frozen=True)
class Orphan:
    path: str
    run_id: str
    age_seconds: float
    size: int


def find_orphans(root: Location, grace_seconds: float = 3600.0, now: float | None = None) -> list[Orphan]:
    """Staged files safe to delete: unreferenced, their run without a live lease, older than the grace."""
    now = now or time.time()
    fs = root.fs
    referenced, live = referenced_paths(root), live_leases(root, now)
    out = []
    for full, info in fs.find(root.path, detail=True).items():
        rel = full[len(root.path.rstrip("/")) + 1:]
        run = staged_run_id(rel)
        if run is None or rel.startswith(("_delta_log/", "_etl/")) or rel in referenced or run in live:
            continue
        mtime = info.get("mtime") or info.get("LastModified") or 0
        mtime = mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime)
        if now - mtime >= grace_seconds:
            out.append(Orphan(rel, run, now - mtime, int(info.get("size", 0))))
    return sorted(out, key=lambda o: o.path)


def remove_orphans(root: Location, orphans: list[Orphan]) -> int:
    for o in orphans:
        root.fs.rm_file(f"{root.path}/{o.path}")
    return len(orphans)


def remove_run_files(root: Location, run_id: str) -> int:
    """After a failed run: delete the files it staged that no commit references."""
    referenced = referenced_paths(root)
    n = 0
    for full in root.fs.find(root.path):
        rel = full[len(root.path.rstrip("/")) + 1:]
        if staged_run_id(rel) == run_id and rel not in referenced:
            root.fs.rm_file(full)
            n += 1
    return n
