"""Click events for the sessionisation example, generated with numpy.

Each user clicks in bursts: a burst's clicks are seconds to minutes apart,
bursts are hours apart, so sessions by a 30-minute gap are well defined.

Examples
--------
>>> ev = events("2026-01-01", users=5, seed=1)
>>> ev.columns.tolist()
['event_id', 'user_id', 'ts', 'page']
>>> bool(ev["event_id"].is_unique)
True
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

PAGES = np.array(["home", "search", "product", "cart", "checkout", "help"])


def events(day: str, users: int = 500, seed: int = 0) -> pd.DataFrame:
    """One day of click events, in no particular order."""
    day_index = (pd.Timestamp(day) - pd.Timestamp("2026-01-01")).days
    rng = np.random.default_rng(seed * 1000 + day_index)
    rows = []
    start = pd.Timestamp(day, tz="UTC").value // 1000  # microseconds
    for user in range(users):
        t = start + int(rng.integers(0, 3_600_000_000))
        for _ in range(int(rng.integers(1, 4))):  # bursts
            n = int(rng.integers(1, 12))
            gaps = rng.integers(1_000_000, 600_000_000, n)  # 1 s to 10 min
            stamps = t + np.cumsum(gaps)
            rows.append(pd.DataFrame({"user_id": user, "ts": stamps}))
            t = int(stamps[-1]) + int(rng.integers(3_600_000_000, 4 * 3_600_000_000))
    out = pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=int(rng.integers(1 << 30)))
    out["ts"] = pd.to_datetime(out["ts"], unit="us", utc=True)
    out["page"] = PAGES[rng.integers(0, len(PAGES), len(out))].astype(object)
    out.insert(0, "event_id", day_index * 10_000_000 + np.arange(len(out), dtype="int64"))
    return out.reset_index(drop=True)[["event_id", "user_id", "ts", "page"]].astype({"user_id": "int64"})


def write_demo(warehouse: str, days: int = 3, users: int = 500, seed: int = 0) -> list[str]:
    """Write ``days`` days of events under ``warehouse/raw/clicks/ds=YYYY-MM-DD/``."""
    dates = []
    for i in range(days):
        day = (pd.Timestamp("2026-01-01") + pd.Timedelta(days=i)).date().isoformat()
        folder = os.path.join(warehouse, "raw", "clicks", f"ds={day}")
        os.makedirs(folder, exist_ok=True)
        ev = events(day, users, seed)
        for j, part in enumerate(np.array_split(np.arange(len(ev)), 2)):
            ev.iloc[part].to_parquet(os.path.join(folder, f"part-{j}.parquet"), index=False)
        dates.append(day)
    return dates
