"""A separate driver process for the ledger tests: ``python _worker.py MODE WAREHOUSE NAME COUNT``.

``append``: print ``ready``, wait for a line on stdin, then record COUNT started+succeeded pairs
(batches ``NAME-0`` ...), printing ``done``.
``forever``: record a ``started`` event for day after day, printing ``ok N`` after each, until killed.
"""

import sys
from datetime import date, timedelta

from etl.ledger import Event, Ledger


def main() -> None:
    mode, warehouse, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ledger = Ledger(warehouse, owner=name)
    if mode == "append":
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(count):
            batch = f"{name}-{i}"
            ledger.record(Event.started("race", batch, f"run-{name}-{i}"))
            ledger.record(Event.succeeded("race", batch, f"run-{name}-{i}", rows={"inserted": i}, version=i))
        print("done", flush=True)
    elif mode == "forever":
        i = 0
        while True:
            day = (date(2026, 1, 1) + timedelta(days=i)).isoformat()
            ledger.record(Event.started("crashy", day, f"run-{i}", app_id=f"etl:crashy:{day}"))
            print(f"ok {i}", flush=True)
            i += 1


if __name__ == "__main__":
    main()
