"""Peak memory of the Dask workers during each stage of a run.

Every Dask worker already samples its own process memory (RSS, what the OS
charges the process and what Dask compares with the worker's memory limit)
into a bounded history: every ``distributed.admin.system-monitor.interval``
(500 ms), the last ``distributed.admin.system-monitor.log-length`` samples
(7200: an hour). A stage window asks every worker, through the scheduler
(``client.run``), for its sample count and current RSS when the stage starts,
and for the samples taken since and its current RSS when it ends. No thread on
the driver, two round trips per stage, and a peak is not missed because the
driver was busy; it works the same on an in-process ``LocalCluster`` and on a
remote scheduler, and does nothing without a distributed client (synchronous
dask). A stage shorter than the sampling interval still gets its start and end
figures.

Per stage, :class:`MemoryPeak` reports two figures, because a cluster can be
far from full while one worker is about to be restarted:

``cluster_bytes``
    the peak of the **summed** RSS of all workers (each worker counted at its
    latest sample: a time-aligned total, not the sum of peaks reached at
    different moments);
``worker_bytes``, ``worker``
    the highest RSS a **single** worker reached, and that worker's address;
``worker_limit_ratio``
    the highest ``peak RSS / memory limit`` of any worker (None when no worker
    has a limit). Dask spills from 0.6-0.7, pauses at 0.8 and restarts the
    worker at 0.95 of its limit;
``workers``
    the workers sampled.

Limits: a stage longer than the history (an hour at the defaults) reports its
last hour and its start; a worker that leaves during a stage counts with its
last figure; runs sharing a cluster see each other's memory.

Examples
--------
Two workers sampled at start (t=0), once in between and at the end:

>>> starts = {"w1": {"count": 5, "time": 0.0, "rss": 100}, "w2": {"count": 9, "time": 0.0, "rss": 200}}
>>> ends = {"w1": {"samples": [(0.5, 400)], "time": 1.0, "rss": 150, "limit": 1000},
...         "w2": {"samples": [(0.7, 300)], "time": 1.0, "rss": 250, "limit": 1000}}
>>> peak = peak_of(starts, ends)
>>> peak.cluster_bytes, peak.worker_bytes, peak.worker, peak.worker_limit_ratio
(700, 400, 'w1', 0.4)
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass
from itertools import groupby
from operator import itemgetter
from typing import Iterator

log = logging.getLogger("etl.observe")

STAGES = ("read_transform", "stage", "commit")


@dataclass(frozen=True)
class MemoryPeak:
    """The peak worker memory of one stage (see the module docstring)."""

    cluster_bytes: int
    worker_bytes: int
    worker: str
    worker_limit_ratio: float | None
    workers: int

    def to_dict(self) -> dict:
        return asdict(self)


def peak_of(starts: dict[str, dict], ends: dict[str, dict]) -> MemoryPeak | None:
    """The peaks of a stage from what the workers answered at its start and its end (None if nobody did).

    ``starts[address]`` holds ``time`` and ``rss``; ``ends[address]`` holds
    ``samples`` (``(time, rss)`` pairs), ``time``, ``rss`` and ``limit``. The
    total at an instant counts each worker at its highest figure taken then,
    else at its latest figure before (nothing before its first).
    """
    series: dict[str, list[tuple[float, int]]] = {}
    for address, s in starts.items():
        series.setdefault(address, []).append((s["time"], s["rss"]))
    for address, e in ends.items():
        series.setdefault(address, []).extend((t, b) for t, b in e["samples"])
        series[address].append((e["time"], e["rss"]))
    if not series:
        return None
    current: dict[str, int] = {}  # each worker's latest figure
    total = cluster = 0  # total: the sum of ``current``
    events = sorted(((t, a, b) for a, points in series.items() for t, b in points), key=itemgetter(0))
    for _, group in groupby(events, key=itemgetter(0)):  # workers changing at one instant change together
        group = list(group)
        highest: dict[str, int] = {}
        for _, address, rss in group:
            highest[address] = max(highest.get(address, 0), rss)
        cluster = max(cluster, total + sum(b - current.get(a, 0) for a, b in highest.items()))
        for _, address, rss in group:
            total += rss - current.get(address, 0)
            current[address] = rss
    per_worker = {address: max(b for _, b in points) for address, points in series.items()}
    worst = max(per_worker, key=per_worker.__getitem__)
    ratios = [per_worker[a] / e["limit"] for a, e in ends.items() if e.get("limit")]
    return MemoryPeak(int(cluster), int(per_worker[worst]), worst,
                      round(max(ratios), 4) if ratios else None, len(series))


def _at_start(dask_worker) -> dict:
    """On a worker: where its memory history stands, and its RSS now."""
    monitor = dask_worker.monitor
    return {"count": monitor.count, "time": time.time(), "rss": monitor.get_process_memory()}


def _at_end(starts: dict, since: float, dask_worker) -> dict:
    """On a worker: its memory samples since the stage started, its RSS now and its memory limit."""
    monitor = dask_worker.monitor
    start = starts.get(dask_worker.address)
    history = monitor.range_query(start=start["count"] if start else 0)
    samples = [(t, b) for t, b in zip(history["time"], history["memory"])
               if t is not None and b is not None and (start is not None or t >= since)]
    memory_manager = getattr(dask_worker, "memory_manager", None)
    return {"samples": samples, "time": time.time(), "rss": monitor.get_process_memory(),
            "limit": getattr(memory_manager, "memory_limit", None)}


def _current_client():
    """The current synchronous distributed client, or None (synchronous dask, an asynchronous client)."""
    try:
        from distributed import Client
    except ImportError:
        return None
    try:
        client = Client.current(allow_global=True)
    except ValueError:
        return None
    return None if client.asynchronous else client


class StageMemory:
    """Peak worker memory of each stage of a run: ``with memory.stage("commit"): ...``.

    A cheap no-op without a distributed client. Sampling never fails a run: a
    worker that does not answer is left out, and a stage nobody answered for has
    no figures. A stage that raises records nothing (the run failed anyway).
    """

    def __init__(self, client=None) -> None:
        self.client = client if client is not None else _current_client()
        self.peaks: dict[str, MemoryPeak] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        starts = self._ask(_at_start)
        yield
        if not starts:
            return
        since = min(s["time"] for s in starts.values())
        peak = peak_of(starts, self._ask(_at_end, starts, since) or {})
        if peak is not None:
            self.peaks[name] = peak
            log.info("peak worker memory during %s: %s", name, describe(peak.to_dict()))

    def to_dict(self) -> dict:
        """``{stage: MemoryPeak.to_dict()}`` for the stages measured (empty without a client)."""
        return {name: peak.to_dict() for name, peak in self.peaks.items()}

    def _ask(self, function, *args) -> dict | None:
        if self.client is None:
            return None
        try:
            answers = self.client.run(function, *args, on_error="ignore")
        except Exception as exc:  # observability never fails a run
            log.debug("could not sample worker memory: %s: %s", type(exc).__name__, exc)
            return None
        return {address: a for address, a in answers.items() if isinstance(a, dict)}


def describe(peak: dict) -> str:
    """One line for a person: the cluster peak, the worst worker, and how close it came to its limit.

    Examples
    --------
    >>> describe({"cluster_bytes": 3 * 2**30, "worker_bytes": 2**30, "worker": "tcp://10.0.0.7:40000",
    ...           "worker_limit_ratio": 0.62, "workers": 4})
    '3.00 GiB over 4 workers; worst worker 1.00 GiB (62% of its limit)'
    """
    from dask.utils import format_bytes

    ratio = peak.get("worker_limit_ratio")
    limit = f" ({ratio:.0%} of its limit)" if ratio is not None else " (no memory limit)"
    return (f"{format_bytes(peak['cluster_bytes'])} over {peak['workers']} workers; "
            f"worst worker {format_bytes(peak['worker_bytes'])}{limit}")
