"""The Python entry points a notebook or a script uses: list, plan, preview, run."""

from __future__ import annotations

from etl.define.pipeline import Pipeline
from etl.define.registry import discover, load
from etl.planning.planner import Plan, make_plan, with_touched_partitions
from etl.run.runner import build_output, run

__all__ = ["list_pipelines", "plan", "preview", "run"]

# plan and preview compute in this process, never on a cluster (even if a client is the default)
_LOCAL = {"scheduler": "threads", "dataframe.shuffle.method": "tasks"}


def list_pipelines(paths: list[str] | None = None) -> list[Pipeline]:
    """The pipelines on the search path, sorted by name."""
    return [p for _, p in sorted(discover(paths).items())]


def _resolve(pipeline: str | Pipeline) -> Pipeline:
    return load(pipeline) if isinstance(pipeline, str) else pipeline


def plan(pipeline: str | Pipeline, *, date: str | None = None, warehouse: str | None = None,
         params: dict | None = None, touched: bool = True) -> Plan:
    """What a run would do, without writing anything to the table.

    With ``touched=True`` the transform runs (in this process) on the batch's
    input to list the table partitions the output would touch.
    """
    pl = make_plan(_resolve(pipeline), date=date, warehouse=warehouse, params=params)
    if touched:
        import dask

        with dask.config.set(_LOCAL):
            pl = with_touched_partitions(pl, build_output(pl))
    return pl


def preview(pipeline: str | Pipeline, *, date: str | None = None, warehouse: str | None = None,
            params: dict | None = None, rows: int = 10, partitions: int = 1):
    """The first rows of the transform's output on the first input partition(s); nothing is written."""
    import dask

    pl = make_plan(_resolve(pipeline), date=date, warehouse=warehouse, params=params)
    with dask.config.set(_LOCAL):
        return build_output(pl).head(rows, npartitions=partitions)
