"""etl: cluster-scale dataframe ETL into Delta Lake.

Declare a pipeline as Dask dataframe transformations, run it on a Dask
cluster, and commit it to a Delta table in one idempotent transaction.

The public API is what this module exports (``__all__``); everything under
``etl._*`` or in submodules not re-exported here may change.

Examples
--------
>>> import etl
>>> sorted(n for n in etl.__all__ if n[0].isupper())[:4]
['ClusterError', 'CommitError', 'ConfigError', 'ConflictError']
"""

from __future__ import annotations

__version__ = "0.1.0"

from etl.run.allocator import tune_arrow_allocator

tune_arrow_allocator()  # before pyarrow loads: Arrow's allocator keeps freed memory a moment (see there)

from etl.define.pipeline import Pipeline, RunContext, pipeline
from etl.define.registry import discover, load as load_pipeline
from etl.define.schema import Schema
from etl.define.source import Source
from etl.define.target import Target
from etl.errors import (ClusterError, CommitError, ConfigError, ConflictError, ContractError,
                        DuplicateKeyError, EtlError, PipelineNotFoundError, SchemaError, SourceError,
                        UnsafeStoreError)
from etl.planning.planner import Plan
from etl.policy.retry import RetryPolicy
from etl.run.result import RunResult
from etl.api import plan, preview, run, list_pipelines
from etl.kernels import Kernel, kernel
from etl._threads import unlock_dask_cached_properties

unlock_dask_cached_properties()  # Python < 3.12: threads building Dask graphs at once must not deadlock

__all__ = [
    "__version__",
    # declare
    "pipeline", "Pipeline", "Source", "Target", "Schema", "RunContext", "kernel", "Kernel",
    # find, plan, run
    "list_pipelines", "load_pipeline", "discover", "plan", "preview", "run", "Plan", "RunResult",
    "RetryPolicy",
    # errors
    "EtlError", "ConfigError", "PipelineNotFoundError", "ClusterError", "SourceError", "SchemaError",
    "DuplicateKeyError", "ContractError", "CommitError", "ConflictError", "UnsafeStoreError",
]
