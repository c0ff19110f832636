"""Run leases as vacuum sees them: which runs are in flight, and since when.

A run writes ``<table>/_etl/runs/<run_id>.json`` (``started``, ``expires``) before
it stages anything and removes it when it is done (:mod:`etl.commit.cleanup`).
Every file the run stages or reads was written or removed after ``started``.
"""

from __future__ import annotations

import json
import time

from etl.commit.cleanup import LEASE_DIR
from etl.io.storage import Location


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
