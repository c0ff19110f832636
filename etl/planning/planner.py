"""Planning a run: resolve the batch's inputs and its target, without running anything.

A :class:`Plan` is plain data: the sources pinned to files or table versions,
the target table, write mode, keys and partitioning, the batch identity that
makes the commit idempotent, and (on request) the table partitions the output
would touch. ``etl plan`` prints it; ``etl run`` executes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Sequence

from etl.define.pipeline import Pipeline, RunContext
from etl.errors import ConfigError, SourceError
from etl.io.sources import ResolvedSource, is_empty, resolve
from etl.io.storage import Location, is_local, redact
from etl.policy.retry import RetryPolicy, effective

DEFAULT_WAREHOUSE = "warehouse"


def default_warehouse() -> str:
    return os.environ.get("ETL_WAREHOUSE", DEFAULT_WAREHOUSE)


def parse_date(value: str | None, today: dt.date | None = None) -> str | None:
    """``YYYY-MM-DD``, ``today`` or ``yesterday`` (UTC) to ``YYYY-MM-DD``; None stays None.

    Examples
    --------
    >>> parse_date("yesterday", today=dt.date(2026, 3, 1))
    '2026-02-28'
    """
    if value is None:
        return None
    today = today or dt.datetime.now(dt.timezone.utc).date()
    if value == "today":
        return today.isoformat()
    if value == "yesterday":
        return (today - dt.timedelta(days=1)).isoformat()
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"--date {value!r} is not a date: expected YYYY-MM-DD, 'today' or 'yesterday'.",
                          value=value) from None


def table_url(table: str, warehouse: str) -> str:
    """A target's table URL: as given if it is a URL or absolute path, else under the warehouse."""
    if "://" in table or os.path.isabs(table):
        return table
    return f"{warehouse.rstrip('/')}/{table}"


@dataclass(frozen=True)
class Plan:
    """What one run of a pipeline would do."""

    pipeline: Pipeline
    dates: tuple
    warehouse: str
    sources: dict  # name -> ResolvedSource; build_output replaces on_malformed="quarantine" ones, screened
    target: Location
    params: dict = field(default_factory=dict)
    touched_partitions: list | None = None

    @property
    def date(self) -> str | None:
        """The batch's date when it covers exactly one."""
        return self.dates[0] if len(self.dates) == 1 else None

    @property
    def batch(self) -> str:
        """The batch id: a date, ``first..last``, or ``all``."""
        if not self.dates:
            return "all"
        return self.dates[0] if len(self.dates) == 1 else f"{self.dates[0]}..{self.dates[-1]}"

    def input_fingerprint(self) -> str:
        h = hashlib.blake2b(digest_size=8)
        h.update(json.dumps([[n, s.fingerprint()] for n, s in sorted(self.sources.items())]).encode())
        h.update(json.dumps([redact(self.target.url), self.pipeline.target.mode,
                             sorted(self.params.items())], default=str).encode())
        return h.hexdigest()

    def app_id(self, nonce: str = "") -> str:
        """The Delta app transaction id of this batch: pipeline, batch, and a digest of target and inputs."""
        return f"etl:{self.pipeline.name}:{self.batch}:{self.input_fingerprint()}{':' + nonce if nonce else ''}"

    def context(self, run_id: str = "") -> RunContext:
        return RunContext(date=self.date, warehouse=self.warehouse, params=dict(self.params), run_id=run_id,
                          dates=self.dates)

    def __repr__(self) -> str:
        return (f"<Plan {self.pipeline.name} batch={self.batch}: {sum(len(s.files) for s in self.sources.values())} "
                f"file(s) -> {self.target} ({self.pipeline.target.mode})>")

    def _repr_html_(self) -> str:
        import html

        d = self.to_dict()
        mode = d["mode"] + (f" by {', '.join(d['merge_keys'])}" if d["merge_keys"] else "") \
            + (f", latest by {d['order_by']}" if d["order_by"] else "")
        touched = d["touched_partitions"]
        rows = [("pipeline", d["pipeline"]), ("batch", d["batch"])]
        rows += [(f"reads {s['name']}", f"{s['format']} {s['url']}: {s['files']} file(s), {s['bytes']:,} bytes"
                  + (f", version {s['version']}" if "version" in s else "")) for s in d["sources"]]
        rows += [("writes", d["target"]), ("mode", mode),
                 ("partitioned by", ", ".join(d["partition_by"]) or "(none)"),
                 ("data files", f"Parquet, {d['compression']}"),
                 ("touches", "(not computed)" if touched is None else f"{len(touched)} partition(s)"
                  + (": " + ", ".join("/".join(f"{k}={v}" for k, v in t.items()) for t in touched[:6])
                     + (" ..." if len(touched) > 6 else "") if touched else "")),
                 ("transaction", d["app_id"])]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                       f"{html.escape(str(v))}</td></tr>" for k, v in rows)
        return f"<table>{body}</table>"

    def to_dict(self) -> dict:
        t = self.pipeline.target
        return {
            "pipeline": self.pipeline.name,
            "batch": self.batch,
            "date": self.date,
            "dates": list(self.dates),
            "sources": [{**s.describe(), "paths": [redact(f[0]) for f in s.files[:50]]}
                        for s in self.sources.values()],
            "target": redact(self.target.url),
            "mode": t.mode,
            "merge_keys": list(t.keys),
            "partition_by": list(t.partition_by),
            "order_by": t.order_by,
            "delete_when": t.delete_when,
            "compression": t.compression,
            "schema": self.pipeline.table_schema.describe(),
            "app_id": self.app_id(),
            "touched_partitions": self.touched_partitions,
        }


def make_plan(pipeline: Pipeline, *, date: str | Sequence[str] | None = None, warehouse: str | None = None,
              params: dict | None = None, generate_demo: bool = True, retry: RetryPolicy | None = None) -> Plan:
    """Resolve a run of ``pipeline`` for one date, several dates (one batch) or all input.

    Demo input is generated first when the sources are empty and the pipeline has a demo.
    Source listings are retried after a transient I/O error under ``retry``, else the
    pipeline's ``retry=``, else :meth:`RetryPolicy.from_env`.
    """
    policy = effective(retry, pipeline.retry)
    warehouse = warehouse or default_warehouse()
    wh = Location(warehouse).url if is_local(warehouse) else warehouse.rstrip("/")
    raw = [date] if isinstance(date, str) else list(date or [])
    dates = tuple(sorted(dict.fromkeys(parse_date(d) for d in raw)))
    try:
        sources = {n: resolve(n, s, wh, dates, policy) for n, s in pipeline.sources.items()}
        missing = any(is_empty(s) for s in sources.values())
    except SourceError:
        if not (generate_demo and pipeline.demo is not None):
            raise
        missing = True
    if missing and generate_demo and pipeline.demo is not None:
        pipeline.demo(RunContext(date=dates[0] if len(dates) == 1 else None, warehouse=wh,
                                 params=dict(params or {}), dates=dates))
        sources = {n: resolve(n, s, wh, dates, policy) for n, s in pipeline.sources.items()}
    target = Location(table_url(pipeline.target.table, wh), pipeline.target.storage_options)
    check_kernels(pipeline)
    return Plan(pipeline, dates, wh, sources, target, dict(params or {}))


def pipeline_kernels(pipeline: Pipeline) -> list:
    """The numba kernels declared at the top level of the pipeline's module."""
    import sys

    from etl.define.registry import module_name
    from etl.kernels import Kernel

    module = sys.modules.get(module_name(pipeline.module_file)) if pipeline.module_file else None
    if module is None:
        module = sys.modules.get(getattr(pipeline.transform, "__module__", ""), None)
    return [v for v in vars(module).values() if isinstance(v, Kernel)] if module is not None else []


def check_kernels(pipeline: Pipeline) -> None:
    """Compile the pipeline's kernels now: one numba cannot compile fails the plan, before any data is read.

    Raises
    ------
    ConfigError
        Naming the kernel and numba's reason.
    """
    for k in pipeline_kernels(pipeline):
        if k.binding.by is None and k.grouped:
            continue  # a per-group kernel meant to be bound later (e.g. by a library function)
        k.check()


def with_touched_partitions(plan: Plan, output) -> Plan:
    """The plan plus the table partitions the output would touch (computes only those columns)."""
    cols = list(plan.pipeline.target.partition_by)
    if not cols:
        return Plan(**{**plan.__dict__, "touched_partitions": []})
    values = output[cols].drop_duplicates().compute()
    touched = sorted(({c: (None if v is None else str(v)) for c, v in zip(cols, row)}
                      for row in values.itertuples(index=False)), key=lambda d: json.dumps(d))
    return Plan(**{**plan.__dict__, "touched_partitions": touched})


def describe_sources(sources: dict[str, ResolvedSource]) -> list[dict]:
    return [s.describe() for s in sources.values()]
