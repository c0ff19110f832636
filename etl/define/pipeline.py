"""What a pipeline is: sources, a typed transform, a declared schema and a target.

A pipeline is declared with the :func:`pipeline` decorator on a plain function.
The function's parameters name its sources (each receives a Dask DataFrame);
a parameter called ``ctx`` receives the :class:`RunContext`. It returns the
output Dask DataFrame, which must match the declared schema.

This module imports nothing from the runner or the sinks.

Examples
--------
>>> import dask.dataframe as dd
>>> from etl import Schema, Source, Target
>>> @pipeline(
...     name="orders_daily",
...     sources={"orders": Source.parquet("{warehouse}/raw/orders/ds={date}/*.parquet")},
...     target=Target.merge("orders", keys=["o_orderkey"]),
...     schema=Schema({"o_orderkey": "int64", "o_total": "float64"}),
... )
... def orders_daily(orders: dd.DataFrame) -> dd.DataFrame:
...     return orders[["o_orderkey", "o_total"]]
>>> orders_daily.name, list(orders_daily.sources)
('orders_daily', ['orders'])
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from etl.define.schema import Schema
from etl.define.source import Source
from etl.define.target import Target
from etl.errors import ConfigError
from etl.policy.retry import RetryPolicy


@dataclass(frozen=True)
class RunContext:
    """What a transform may know about the run it is part of.

    Attributes
    ----------
    date : str or None
        The batch date (``YYYY-MM-DD``) or None for a run over all input.
    warehouse : str
        The warehouse root URL.
    params : dict
        Free parameters given on the command line or in Python.
    run_id : str
        The unique id of this run.
    dates : tuple of str
        Every date of the batch (a backfill batch may span several days).
    """

    date: str | None
    warehouse: str
    params: Mapping[str, Any] = field(default_factory=dict)
    run_id: str = ""
    dates: tuple = ()


@dataclass(frozen=True)
class Pipeline:
    """A declared pipeline. Build it with :func:`pipeline`, not directly."""

    name: str
    transform: Callable[..., Any]
    sources: Mapping[str, Source]
    target: Target
    schema: Schema
    demo: Callable[[RunContext], None] | None = None
    description: str = ""
    module_file: str | None = None
    contract: Any = None
    retry: RetryPolicy | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_signature(self)
        _check_target_columns(self)
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise ConfigError(f"pipeline {self.name!r}: retry= must be a RetryPolicy, found {self.retry!r}.")
        if self.contract is None and any(s.on_malformed == "quarantine" for s in self.sources.values()):
            from etl.contracts.contract import Contract

            # malformed files take the contract's quarantine path; no row checks, no error budget
            object.__setattr__(self, "contract", Contract(error_budget=None))
        if self.contract is not None:
            self.contract.validate(self.schema.names)

    @property
    def table_schema(self) -> Schema:
        """The schema as written to the table: merge keys are never null."""
        return self.schema.with_not_null(self.target.keys)

    def __repr__(self) -> str:
        t = self.target
        return (f"<Pipeline {self.name!r}: {', '.join(self.sources)} -> {t.table} "
                f"({t.mode}{' by ' + ', '.join(t.keys) if t.keys else ''})>")


def pipeline(
    *,
    name: str,
    sources: Mapping[str, Source],
    target: Target,
    schema: Schema,
    demo: Callable[[RunContext], None] | None = None,
    description: str = "",
    contract: Any = None,
    retry: RetryPolicy | None = None,
) -> Callable[[Callable[..., Any]], Pipeline]:
    """Declare a pipeline from a transform function.

    Parameters
    ----------
    name : str
        Unique name, used on the command line (letters, digits, ``_``, ``-``).
    sources : mapping of str to Source
        One entry per transform parameter of the same name.
    target : Target
        The Delta table written and the write mode.
    schema : Schema
        The declared output schema, checked before anything is committed.
    demo : callable, optional
        ``demo(ctx)`` writes demo input under ``ctx.warehouse`` when the
        sources hold no data, so the example runs on an empty warehouse.
    description : str
        One line for ``etl list``; defaults to the function's docstring.
    contract : etl.contracts.Contract, optional
        Checks on the output rows, each failing the batch, quarantining the row or warning,
        with an error budget per batch. A pipeline with a source declared
        ``on_malformed="quarantine"`` and no contract gets ``Contract(error_budget=None)``:
        no row checks and no budget, so that its malformed files reach the quarantine.
    retry : RetryPolicy, optional
        This pipeline's retries of transient failures: of each source file read (inside its
        Dask task) and, in a backfill, of each batch and its commit. Default: the environment's
        (:meth:`RetryPolicy.from_env`).
    """

    def wrap(fn: Callable[..., Any]) -> Pipeline:
        doc = description or (inspect.getdoc(fn) or "").split("\n")[0]
        module = inspect.getmodule(fn)
        return Pipeline(name=name, transform=fn, sources=dict(sources), target=target, schema=schema,
                        demo=demo, description=doc, module_file=getattr(module, "__file__", None),
                        contract=contract, retry=retry)

    return wrap


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ConfigError(f"pipeline name {name!r} is not valid: use letters, digits, '_' and '-'.")


def _check_signature(p: Pipeline) -> None:
    params = list(inspect.signature(p.transform).parameters)
    unknown = [x for x in params if x != "ctx" and x not in p.sources]
    missing = [s for s in p.sources if s not in params]
    if unknown or missing:
        raise ConfigError(
            f"pipeline {p.name!r}: transform {p.transform.__name__}({', '.join(params)}) must take one "
            f"parameter per source {sorted(p.sources)} (and optionally ctx); "
            f"unknown parameters {unknown}, unused sources {missing}."
        )


def _check_target_columns(p: Pipeline) -> None:
    t, names = p.target, p.schema.names
    wanted = {"keys": list(t.keys), "partition_by": list(t.partition_by),
              "order_by": [t.order_by] if t.order_by else []}
    for what, cols in wanted.items():
        absent = [c for c in cols if c not in names]
        if absent:
            raise ConfigError(
                f"pipeline {p.name!r}: target {what} {absent} are not in the declared schema {names}. "
                "Declare them in the Schema or fix the target."
            )
    if t.delete_when and t.delete_when in names:
        raise ConfigError(f"pipeline {p.name!r}: delete_when column {t.delete_when!r} is a flag of the "
                          "transform's output and must not be a schema column.")
    if set(t.keys) & set(t.partition_by) and not set(t.partition_by) <= set(t.keys):
        pass  # allowed: partially overlapping keys and partitions are fine
