"""A driver process that runs one batch and may SIGKILL itself at a commit hook point.

    python -m tests.faults._driver WAREHOUSE DATE SCHEDULER {before_commit,after_commit,none}

Prints ``STATUS <status> RUN <run_id>`` when it survives.
"""

import sys

import etl
from tests.core.helpers import make_pipeline
from tests.faults._faults import suicide


def main(warehouse: str, date: str, scheduler: str, kill_at: str) -> None:
    def hook(point: str) -> None:
        if point == kill_at:
            suicide()

    r = etl.run(make_pipeline(), date=date, warehouse=warehouse, scheduler=scheduler, hook=hook)
    print(f"STATUS {r.status} RUN {r.run_id}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
