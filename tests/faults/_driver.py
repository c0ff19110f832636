"""A driver process that runs one batch, and may die or wait at a commit hook point.

    python -m tests.faults._driver WAREHOUSE DATE SCHEDULER ACTION [BARRIER_DIR]

ACTION is ``before_commit`` or ``after_commit`` (SIGKILL itself there), ``meet``
(at ``before_commit``, wait until a second driver has reached its own: both
commit from the same snapshot) or ``none``. Prints
``STATUS <status> RUN <run_id> RECOMPUTED <n>`` when it survives.
"""

import os
import sys
import time

import etl
from tests.core.helpers import make_pipeline
from tests.faults._faults import suicide


def main(warehouse: str, date: str, scheduler: str, action: str, barrier: str = "") -> None:
    met = []

    def hook(point: str) -> None:
        if point == action:
            suicide()
        if action == "meet" and point == "before_commit" and not met:
            met.append(point)
            open(os.path.join(barrier, date), "w").close()
            deadline = time.monotonic() + 120
            while len(os.listdir(barrier)) < 2:  # the other driver, bounded
                if time.monotonic() > deadline:
                    raise TimeoutError("the other driver never reached its commit")
                time.sleep(0.01)

    r = etl.run(make_pipeline(), date=date, warehouse=warehouse, scheduler=scheduler, hook=hook)
    print(f"STATUS {r.status} RUN {r.run_id} RECOMPUTED {r.recomputed}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:6])
