"""A driver process for the concurrency test: run one batch, meeting the other writer before committing."""

import os
import sys
import time

import etl
from tests.core.helpers import make_pipeline


def main(warehouse: str, date: str, scheduler: str, barrier_dir: str) -> None:
    me = os.path.join(barrier_dir, date)

    def meet(point, state={"done": False}):
        if point != "before_commit" or state["done"]:
            return
        state["done"] = True
        open(me, "w").close()
        deadline = time.monotonic() + 120
        while len(os.listdir(barrier_dir)) < 2:  # wait for the other writer, bounded
            if time.monotonic() > deadline:
                raise TimeoutError("the other writer never reached its commit")
            time.sleep(0.01)

    r = etl.run(make_pipeline(), date=date, warehouse=warehouse, scheduler=scheduler, hook=meet)
    print(f"STATUS {r.status} RECOMPUTED {r.recomputed}")


if __name__ == "__main__":
    main(*sys.argv[1:5])
