"""Two threads building Dask expressions at once, each needing a cached property the other holds.

    python -m tests.faults._graph_threads

Thread 1 computes ``x.divisions`` and inside it needs ``w.ndim``; thread 2 computes
``y.ndim`` and inside it needs ``z.divisions``: the shape of the nested properties
dask-expr takes while two runs build graphs at once (``Concat`` divisions against
``npartitions`` in the hang this suite found). On Python < 3.12 a
``functools.cached_property`` holds ONE lock for all instances while it computes,
so unless ``etl`` removes those locks the two threads deadlock. Prints ``done``, or
``deadlocked`` (exit code 3) when both threads are still stuck after 10 s.
"""

import os
import threading

import pandas as pd

import etl  # noqa: F401  (importing etl must make graph building in threads safe)
from dask.dataframe.dask_expr._expr import Expr

both_inside = threading.Barrier(2, timeout=10)


class Probe(Expr):
    _parameters = ["tag"]

    def __new__(cls, tag):
        return super().__new__(cls, tag, _determ_token=f"probe-{tag}")

    def _divisions(self):
        if self.tag == "x":  # thread 1, inside x.divisions
            both_inside.wait()
            Probe("w").ndim
        return (None, None)

    @property
    def _meta(self):
        if self.tag == "y":  # thread 2, inside y.ndim
            both_inside.wait()
            Probe("z").divisions
        return pd.DataFrame()


def main() -> None:
    finished = []
    threads = [threading.Thread(target=lambda: finished.append(Probe("x").divisions), daemon=True),
               threading.Thread(target=lambda: finished.append(Probe("y").ndim), daemon=True)]
    [t.start() for t in threads]
    [t.join(timeout=10) for t in threads]
    if any(t.is_alive() for t in threads):
        print("deadlocked: both threads still wait for each other's cached_property lock after 10 s", flush=True)
        os._exit(3)
    if len(finished) != 2:
        raise SystemExit("a thread failed (see above)")
    print("done", flush=True)


if __name__ == "__main__":
    main()
