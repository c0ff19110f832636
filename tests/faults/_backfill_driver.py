"""A driver process running one backfill, for two drivers over overlapping ranges at once.

    python -m tests.faults._backfill_driver {A,B} WAREHOUSE START END SCHEDULER COORD_DIR

Forced interleaving on the shared batch 2026-01-03, through files in COORD_DIR:
driver B's run of it stops at its commit (``parked``), holding the batch, until
driver A's run of it has returned or raised (``released``); driver A starts its
run of it only once B's is parked. ``<NAME>-running`` appears once a driver has
recorded its plan and started a batch, ``<NAME>-done`` when it ends. Prints one
JSON line: ``{"ok", "results": {batch: status}, "errors": {batch: "Class: message"}}``.
"""

import json
import os
import sys
import time

from etl.run import runner
from etl.run.backfill import backfill
from tests.core.helpers import make_pipeline

SHARED = ("2026-01-03",)
DEADLINE = 120.0


def _touch(path: str) -> None:
    open(path, "a").close()


def _wait(*paths: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not any(os.path.exists(p) for p in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {DEADLINE}s for any of {paths}")
        time.sleep(0.01)


def main(name: str, warehouse: str, start: str, end: str, scheduler: str, coord: str) -> None:
    other = {"A": "B", "B": "A"}[name]
    at = {k: os.path.join(coord, k) for k in ("parked", "released", f"{name}-running", f"{name}-done",
                                              f"{other}-done")}
    real = runner.run

    def hook(point: str) -> None:
        if name == "B" and point == "before_commit":
            _touch(at["parked"])
            _wait(at["released"], at[f"{other}-done"])

    def run(*args, **kw):
        _touch(at[f"{name}-running"])
        if tuple(kw["date"]) != SHARED:
            return real(*args, **kw)
        if name == "A":
            _wait(at["parked"], at[f"{other}-done"])
            try:
                return real(*args, **kw)
            finally:
                _touch(at["released"])
        return real(*args, hook=hook, **kw)

    runner.run = run
    try:
        r = backfill(make_pipeline(), start, end, concurrency=2, warehouse=warehouse, scheduler=scheduler)
    finally:
        _touch(at[f"{name}-done"])
    print(json.dumps({"ok": r.ok, "results": {b: x.status for b, x in r.results.items()},
                      "errors": {b: f"{type(e).__name__}: {e}" for b, e in r.errors.items()}}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:7])
