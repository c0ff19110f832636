"""TPC-H-style line items and orders, generated with numpy, plus daily change batches.

Column names and value ranges follow TPC-H; the values are not the official
generator's. A change batch updates about ``update_frac`` of the existing line
items (quantity, price, comment and ``l_updated_at`` change) and inserts about
``insert_frac`` new ones (new order keys above the current maximum).

Examples
--------
>>> base = lineitem(orders=100, seed=1)
>>> int(base.duplicated(["l_orderkey", "l_linenumber"]).sum())
0
>>> ch = changes(base, day=1, seed=1)
>>> bool((ch["l_updated_at"] > base["l_updated_at"].max()).all())
True
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

SEGMENTS = np.array(["AUTOMOBILE", "BUILDING", "FURNITURE", "HOUSEHOLD", "MACHINERY"])
MODES = np.array(["AIR", "FOB", "MAIL", "RAIL", "REG AIR", "SHIP", "TRUCK"])
INSTRUCT = np.array(["COLLECT COD", "DELIVER IN PERSON", "NONE", "TAKE BACK RETURN"])
WORDS = np.array("carefully final deposits sleep quickly regular accounts haggle furiously ironic "
                 "packages wake blithely express requests nag slyly pending theodolites".split())
START = np.datetime64("1992-01-01")
EPOCH_UPDATED = pd.Timestamp("2026-01-01", tz="UTC")


def _comments(rng: np.random.Generator, n: int) -> np.ndarray:
    w = WORDS[rng.integers(0, len(WORDS), size=(n, 3))]
    return np.char.add(np.char.add(np.char.add(w[:, 0], " "), np.char.add(w[:, 1], " ")), w[:, 2]).astype(object)


def _lines(rng: np.random.Generator, orderkeys: np.ndarray, updated_at: pd.Timestamp) -> pd.DataFrame:
    per_order = rng.integers(1, 8, size=len(orderkeys))
    okey = np.repeat(orderkeys, per_order)
    line = np.concatenate([np.arange(1, k + 1) for k in per_order]) if len(per_order) else np.array([], int)
    n = len(okey)
    orderdate = START + (okey * 7919 % 2405).astype("timedelta64[D]")
    ship = orderdate + rng.integers(1, 122, n).astype("timedelta64[D]")
    qty = rng.integers(1, 51, n).astype("float64")
    price = np.round(qty * rng.uniform(900, 2000, n), 2)
    return pd.DataFrame({
        "l_orderkey": okey.astype("int64"),
        "l_partkey": rng.integers(1, 200_000, n).astype("int64"),
        "l_suppkey": rng.integers(1, 10_000, n).astype("int64"),
        "l_linenumber": line.astype("int64"),
        "l_quantity": qty,
        "l_extendedprice": price,
        "l_discount": np.round(rng.integers(0, 11, n) / 100, 2),
        "l_tax": np.round(rng.integers(0, 9, n) / 100, 2),
        "l_returnflag": rng.choice(np.array(["R", "A", "N"]), n).astype(object),
        "l_linestatus": rng.choice(np.array(["O", "F"]), n).astype(object),
        "l_shipdate": ship.astype("datetime64[s]").astype(object),
        "l_commitdate": (orderdate + rng.integers(30, 91, n).astype("timedelta64[D]")).astype(object),
        "l_receiptdate": (ship + rng.integers(1, 31, n).astype("timedelta64[D]")).astype(object),
        "l_shipinstruct": INSTRUCT[rng.integers(0, 4, n)].astype(object),
        "l_shipmode": MODES[rng.integers(0, 7, n)].astype(object),
        "l_comment": _comments(rng, n),
        "l_updated_at": pd.Series(pd.Timestamp(updated_at), index=range(n)).dt.as_unit("us"),
    }).pipe(_dates)


def _dates(df: pd.DataFrame) -> pd.DataFrame:
    for c in ("l_shipdate", "l_commitdate", "l_receiptdate"):
        df[c] = pd.to_datetime(df[c]).dt.date
    return df


def lineitem(orders: int, seed: int = 0) -> pd.DataFrame:
    """The initial line items of ``orders`` orders (about 4 lines each)."""
    rng = np.random.default_rng(seed)
    return _lines(rng, np.arange(1, orders + 1, dtype="int64") * 4, EPOCH_UPDATED)


def orders(max_orderkey: int, seed: int = 0) -> pd.DataFrame:
    """Orders with their customer's market segment, for every order key up to ``max_orderkey``."""
    rng = np.random.default_rng(seed + 7)
    keys = np.arange(4, max_orderkey + 1, 4, dtype="int64")
    return pd.DataFrame({"o_orderkey": keys, "o_custkey": rng.integers(1, 150_000, len(keys)).astype("int64"),
                         "c_mktsegment": SEGMENTS[rng.integers(0, len(SEGMENTS), len(keys))].astype(object)})


def changes(base: pd.DataFrame, day: int, seed: int = 0, update_frac: float = 0.01,
            insert_frac: float = 0.005) -> pd.DataFrame:
    """A daily change batch against ``base``: updated existing lines and new orders' lines."""
    rng = np.random.default_rng(seed * 1000 + day)
    stamp = EPOCH_UPDATED + pd.Timedelta(days=day)
    upd = base.sample(n=max(1, int(len(base) * update_frac)), random_state=int(rng.integers(1 << 31))).copy()
    upd["l_quantity"] = rng.integers(1, 51, len(upd)).astype("float64")
    upd["l_extendedprice"] = np.round(upd["l_quantity"] * rng.uniform(900, 2000, len(upd)), 2)
    upd["l_comment"] = _comments(rng, len(upd))
    upd["l_updated_at"] = pd.Series(stamp, index=upd.index).dt.as_unit("us")
    first = int(base["l_orderkey"].max()) // 4 + 1
    new_orders = max(1, int(len(base) * insert_frac / 4))
    ins = _lines(rng, np.arange(first, first + new_orders, dtype="int64") * 4, stamp)
    return pd.concat([upd, ins], ignore_index=True)


def write_demo(warehouse: str, orders_count: int = 20_000, days: int = 3, seed: int = 0) -> list[str]:
    """Write the demo input under ``warehouse/raw``: an initial extract and ``days - 1`` change batches.

    Returns the batch dates written (``ds=YYYY-MM-DD`` folders).
    """
    from etl.io.storage import Location

    root = Location(warehouse)
    fs = root.fs

    def write(frame: pd.DataFrame, folder: str, name: str) -> None:
        fs.makedirs(f"{root.path}/{folder}", exist_ok=True)
        with fs.open(f"{root.path}/{folder}/{name}", "wb") as f:
            frame.to_parquet(f, index=False)

    base = lineitem(orders_count, seed)
    dates, frames = [], [base]
    current = base
    for day in range(1, days):
        ch = changes(current, day, seed)
        frames.append(ch)
        current = pd.concat([current, ch]).drop_duplicates(["l_orderkey", "l_linenumber"], keep="last")
    for i, frame in enumerate(frames):
        ds = (dt.date(2026, 1, 1) + dt.timedelta(days=i)).isoformat()
        step = 50_000
        for j in range(0, max(len(frame), 1), step):
            write(frame.iloc[j:j + step], f"raw/lineitem/ds={ds}", f"part-{j // step:04d}.parquet")
        dates.append(ds)
    write(orders(int(current["l_orderkey"].max()), seed), "raw/orders", "orders.parquet")
    return dates
