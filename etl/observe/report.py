"""A Dask performance report of a block of work: task stream, worker profiles, bandwidth, as one HTML file.

``etl run --performance-report FILE.html`` and ``etl backfill --performance-report FILE.html`` (or
``etl.run(..., performance_report=FILE)``) wrap their work on the cluster in
:func:`performance_report`. The scheduler renders the report with bokeh, so bokeh must be installed
where the scheduler runs (``pip install "etl[report]"``; for the default local cluster, that is where
``etl`` runs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Iterator

log = logging.getLogger("etl.observe")


@contextlib.contextmanager
def performance_report(path: str | os.PathLike | None) -> Iterator[Path | None]:
    """Record a Dask performance report (task stream, profiles, bandwidth) of the block to an HTML file.

    Needs the current distributed client, and ``bokeh>=3.1`` where the
    **scheduler** runs: the scheduler renders the report (for an in-process
    ``LocalCluster`` that is this environment: ``pip install "etl[report]"``).
    This is checked on entry, before the block runs, and a
    :class:`~etl.errors.ConfigError` says what to install where. The report is
    written also when the block fails; a report that cannot be written is
    logged and never hides the block's own outcome. With ``path=None`` it does
    nothing, so callers can make it optional::

        with performance_report(args.report):
            etl.run("tpch_lineitem_daily", client=client)

    ``etl.run(..., performance_report=PATH)`` and ``etl run --performance-report
    PATH`` use it around a run's work on the cluster.
    """
    if path is None:
        yield None
        return
    from distributed import get_client, performance_report as _report

    try:
        client = get_client()
    except ValueError:
        from etl.errors import ConfigError

        raise ConfigError("a Dask performance report needs a distributed client; run on a Dask cluster "
                          "(etl.run(..., client=...) or the default local cluster).") from None
    problem = bokeh_problem(_scheduler_bokeh(client))
    if problem:
        from etl.errors import ConfigError

        raise ConfigError(f"{problem} (or drop the performance report option).", package="bokeh")
    report = _report(filename=str(path))
    report.__enter__()
    try:
        yield Path(path)
    finally:
        try:
            if client.status == "running":
                report.__exit__(None, None, None)
        except Exception as exc:  # the run's outcome matters more than its report
            log.warning("could not write the Dask performance report %s: %s: %s", path, type(exc).__name__, exc)


def _scheduler_bokeh(client) -> str | None:
    """The bokeh version installed where the scheduler runs, or None (the scheduler's own version check)."""
    info = client.sync(client.scheduler.versions, packages=["bokeh"])
    return info["packages"].get("bokeh")


def bokeh_problem(found: str | None) -> str | None:
    """Why a scheduler with bokeh ``found`` (None: not installed) cannot render a report, or None if it can.

    Examples
    --------
    >>> bokeh_problem("3.9.2") is None
    True
    >>> print(bokeh_problem(None).split(", and ")[1])
    it is not installed there: pip install "etl[report]" (or bokeh>=3.1) in the scheduler's environment
    >>> print(bokeh_problem("2.4.3").split(":")[0])
    a Dask performance report needs bokeh>=3.1 where the Dask scheduler runs, and it has bokeh 2.4.3
    """
    if found is not None and tuple(int(x) for x in re.findall(r"\d+", found)[:2]) >= (3, 1):
        return None
    has = "it is not installed there" if found is None else f"it has bokeh {found}"
    return (f"a Dask performance report needs bokeh>=3.1 where the Dask scheduler runs, and {has}: "
            'pip install "etl[report]" (or bokeh>=3.1) in the scheduler\'s environment')
