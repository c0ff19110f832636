"""The engines compared by ``benchmarks/upsert.py``.

Each engine runs inside its own child process (see ``upsert.py``) and offers

* ``setup(ctx)``   untimed preparation (the ``etl`` engine starts its Dask cluster here),
* ``load(ctx)``    initial load of the full table into a fresh Delta table partitioned by
                   ``ship_month`` (timed),
* ``merge(ctx)``   the MERGE of the batch (timed; called twice: ``merge`` then ``rerun``),
* ``extra_steps``  optional further timed steps (``etl``: the CLI run),
* ``teardown()``.

Every engine reads its inputs inside the timed step: the load reads the input Parquet
files, the merge reads the batch Parquet files.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .data import KEYS, ORDER_BY, PARTITION_BY, SCHEMA

MERGE_PREDICATE = "t.l_orderkey = s.l_orderkey AND t.l_linenumber = s.l_linenumber"


class EngineUnavailable(Exception):
    """The engine cannot run here (not installed / API not there yet)."""


@dataclass
class Ctx:
    input_dir: str
    input_files: list[str]
    batch_dir: str
    batch_files: list[str]
    table: str  # local path of the Delta table
    workdir: str
    months: list[str] | None = None  # ship months of the batch (for the pruned variant)
    extra: dict = field(default_factory=dict)


class Engine:
    name = "?"
    #: Modules imported before timing starts (import time is not part of a step).
    imports: tuple[str, ...] = ("pyarrow.dataset", "deltalake")
    extra_steps: list[tuple[str, Callable[[Ctx], None]]] = []

    def setup(self, ctx: Ctx) -> None:
        pass

    def load(self, ctx: Ctx) -> None:
        raise NotImplementedError

    def after_load(self, ctx: Ctx) -> None:
        """Untimed, between the load and the merge."""

    def merge(self, ctx: Ctx) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        pass


# --------------------------------------------------------------------------- deltalake


def _read_batch_arrow(ctx: Ctx):
    import pyarrow.dataset as ds

    return ds.dataset(ctx.batch_files, format="parquet").to_table()


class DeltalakeNative(Engine):
    """delta-rs: streamed ``write_deltalake`` load, ``DeltaTable.merge`` upsert.

    ``variant``:
      * ``plain``   -- the anchor: key predicate, ``when_matched_update_all()``.
      * ``changed`` -- ``when_matched_update_all(predicate="(t.c IS DISTINCT FROM s.c) OR ...")``
                       over all non-key columns: only really changed rows are updated.
      * ``pruned``  -- the key predicate plus ``t.ship_month IN (<months of the batch>)`` spelled
                       out, so delta-rs can prune target partitions (delta-rs #3278, #3432).
    """

    def __init__(self, variant: str = "plain"):
        self.variant = variant
        self.name = "deltalake" if variant == "plain" else f"deltalake-{variant}"

    def load(self, ctx: Ctx) -> None:
        import pyarrow.dataset as ds
        from deltalake import write_deltalake

        reader = ds.dataset(ctx.input_files, format="parquet").scanner(batch_size=131_072).to_reader()
        write_deltalake(ctx.table, reader, partition_by=PARTITION_BY, mode="error")

    def merge(self, ctx: Ctx) -> None:
        from deltalake import DeltaTable

        source = _read_batch_arrow(ctx)
        predicate = MERGE_PREDICATE
        if self.variant == "pruned":
            import pyarrow.compute as pc

            months = sorted(pc.unique(source.column("ship_month")).to_pylist())
            predicate += " AND t.ship_month IN (" + ", ".join(f"'{m}'" for m in months) + ")"
        merger = DeltaTable(ctx.table).merge(source, predicate=predicate, source_alias="s", target_alias="t")
        if self.variant == "changed":
            cols = [f.name for f in SCHEMA if f.name not in KEYS]
            changed = " OR ".join(f"(t.{c} IS DISTINCT FROM s.{c})" for c in cols)
            merger = merger.when_matched_update_all(predicate=changed)
        else:
            merger = merger.when_matched_update_all()
        ctx.extra["merge_metrics"] = merger.when_not_matched_insert_all().execute()


# --------------------------------------------------------------------------- polars


class Polars(Engine):
    """polars: eager ``read_parquet`` + ``write_delta`` load, ``write_delta(mode="merge")`` upsert."""

    name = "polars"
    imports = ("pyarrow.dataset", "deltalake", "polars")

    def load(self, ctx: Ctx) -> None:
        import polars as pl

        pl.read_parquet(ctx.input_files).write_delta(
            ctx.table, mode="error", delta_write_options={"partition_by": PARTITION_BY}
        )

    def merge(self, ctx: Ctx) -> None:
        import polars as pl

        metrics = (
            pl.read_parquet(ctx.batch_files)
            .write_delta(
                ctx.table,
                mode="merge",
                delta_merge_options={"predicate": MERGE_PREDICATE, "source_alias": "s", "target_alias": "t"},
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        ctx.extra["merge_metrics"] = metrics


# --------------------------------------------------------------------------- pandas


class Pandas(Engine):
    """Plain pandas rewrite: read the whole table, upsert by keys, overwrite the table."""

    name = "pandas"
    imports = ("pyarrow.dataset", "deltalake", "pandas")

    @staticmethod
    def _write(ctx: Ctx, df, mode: str) -> None:
        import pyarrow as pa
        from deltalake import write_deltalake

        table = pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False)
        del df
        write_deltalake(ctx.table, table, partition_by=PARTITION_BY, mode=mode)

    def load(self, ctx: Ctx) -> None:
        import pandas as pd

        self._write(ctx, pd.read_parquet(ctx.input_dir), mode="error")

    def merge(self, ctx: Ctx) -> None:
        import pandas as pd
        from deltalake import DeltaTable

        current = DeltaTable(ctx.table).to_pandas()
        batch = pd.read_parquet(ctx.batch_dir)
        df = pd.concat([current, batch[current.columns]], ignore_index=True)
        del current, batch
        # Stable sort: on a tie (a rerun) the batch row, which comes last, still wins.
        df = df.sort_values(ORDER_BY, kind="stable").drop_duplicates(KEYS, keep="last").reset_index(drop=True)
        self._write(ctx, df, mode="overwrite")


# --------------------------------------------------------------------------- etl (adapter)
#
# The benchmark's pipeline in etl's public API:
#
#   @etl.pipeline(name=..., sources={"lineitem": etl.Source.parquet("<dir>/*.parquet")},
#                 target=etl.Target.merge(table_url, keys=[...], partition_by=[...], order_by=...),
#                 schema=etl.Schema.from_arrow(pa_schema))
#   def upsert(lineitem): return lineitem      # one parameter per source, a dask DataFrame
#
#   etl.run(pipeline, client=client, warehouse=warehouse_dir)
#
# and, for the cli_merge step, the CLI ``etl run NAME`` (ETL_CLI below; the generated pipeline's
# folder passed as ETL_PIPELINES), which starts its own LocalCluster. The initial load is a MERGE
# into a table that does not exist yet (etl creates it). ImportError / AttributeError / TypeError
# while building the pipeline => the harness prints "etl: not available" and carries on.

#: Command line of the CLI run (after ``etl``), formatted with pipeline_name / warehouse.
ETL_CLI = ["run", "{pipeline_name}", "--warehouse", "{warehouse}"]

_CLI_PIPELINE_FILE = '''\
"""Generated by benchmarks/_bench/engines.py for the upsert benchmark's CLI timing."""
import pyarrow as pa
import etl

SCHEMA = pa.schema([{schema_fields}])


@etl.pipeline(
    name={name!r},
    sources={{"lineitem": etl.Source.parquet({source!r})}},
    target=etl.Target.merge({table!r}, keys={keys!r}, partition_by={partition_by!r}, order_by={order_by!r}),
    schema=etl.Schema.from_arrow(SCHEMA),
)
def {name}(lineitem):
    return lineitem
'''


#: pyarrow constructor spelled in the generated pipeline file, by str(type).
_PA_CTOR = {
    "int64": "pa.int64()",
    "int32": "pa.int32()",
    "double": "pa.float64()",
    "string": "pa.string()",
    "date32[day]": "pa.date32()",
}


def _glob(parquet_dir: str) -> str:
    return os.path.join(parquet_dir, "*.parquet")


def build_etl_pipeline(etl, name: str, source_dir: str, table_url: str):
    """The benchmark's pipeline in the etl API: read Parquet files, MERGE by key."""

    @etl.pipeline(
        name=name,
        sources={"lineitem": etl.Source.parquet(_glob(source_dir))},
        target=etl.Target.merge(table_url, keys=KEYS, partition_by=PARTITION_BY, order_by=ORDER_BY),
        schema=etl.Schema.from_arrow(SCHEMA),
    )
    def upsert_lineitem(lineitem):
        return lineitem

    return upsert_lineitem


class Etl(Engine):
    """Our framework on a LocalCluster(n_workers=2, threads_per_worker=1) started before timing.

    "Cluster already running" (the issue's terms): setup also loads etl's modules and numba
    kernels on the workers, untimed, as any earlier run on a long-lived cluster would have; the
    native engine likewise imports deltalake before its timing starts. The ``cli_merge`` step
    pays all of it (interpreter, imports, cluster start) inside its timing.
    """

    name = "etl"
    imports = ("pyarrow.dataset", "deltalake", "distributed")

    def __init__(self):
        self.cluster = self.client = None
        self.extra_steps = [("cli_merge", self.cli_merge)]

    def setup(self, ctx: Ctx) -> None:
        try:
            import etl

            for attr in ("pipeline", "Source", "Target", "Schema", "run"):
                getattr(etl, attr)
            # Build once to surface API mismatches before the cluster starts.
            build_etl_pipeline(etl, "upsert_probe", ctx.batch_dir, ctx.table)
        except (ImportError, AttributeError, TypeError) as e:
            raise EngineUnavailable(f"{type(e).__name__}: {e}") from e
        self.etl = etl
        if ctx.extra.get("step") == "cli_merge":
            return  # the CLI starts its own cluster, inside the timing
        from distributed import Client, LocalCluster

        self.warehouse = os.path.join(ctx.workdir, "warehouse")
        os.makedirs(self.warehouse, exist_ok=True)
        self.cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        )
        self.client = Client(self.cluster)
        self.client.wait_for_workers(2)
        from etl.run.cluster import warm_kernels

        self.client.run(importlib.import_module, "etl.run.stage")
        warm_kernels(self.client, [])

    def load(self, ctx: Ctx) -> None:
        p = build_etl_pipeline(self.etl, "lineitem_load", ctx.input_dir, ctx.table)
        self.etl.run(p, client=self.client, warehouse=self.warehouse)

    def after_load(self, ctx: Ctx) -> None:
        # Untimed side copy of the freshly loaded table, for the CLI merge timing.
        shutil.copytree(ctx.table, ctx.table + "-cli")

    def merge(self, ctx: Ctx) -> None:
        p = build_etl_pipeline(self.etl, "lineitem_upsert", ctx.batch_dir, ctx.table)
        ctx.extra["run_results"] = repr(self.etl.run(p, client=self.client, warehouse=self.warehouse))[:1000]

    def cli_merge(self, ctx: Ctx) -> str:
        """The whole ``etl run`` CLI (interpreter start, cluster start, merge) on the side copy.

        Returns the path of the table it wrote, for verification.
        """
        table = ctx.table + "-cli"
        pdir = os.path.join(ctx.workdir, "cli_pipelines")
        os.makedirs(pdir, exist_ok=True)
        name = "lineitem_upsert_cli"
        Path(pdir, f"{name}.py").write_text(
            _CLI_PIPELINE_FILE.format(
                schema_fields=", ".join(f"pa.field({f.name!r}, {_PA_CTOR[str(f.type)]}, nullable={f.nullable})"
                                       for f in SCHEMA),
                name=name,
                source=_glob(ctx.batch_dir),
                table=table,
                keys=KEYS,
                partition_by=PARTITION_BY,
                order_by=ORDER_BY,
            )
        )
        wh = os.path.join(ctx.workdir, "warehouse-cli")
        os.makedirs(wh, exist_ok=True)
        args = [a.format(pipeline_name=name, warehouse=wh) for a in ETL_CLI]
        exe = shutil.which("etl")
        cmd = [exe, *args] if exe else [sys.executable, "-c", "import sys; from etl.cli import main; sys.exit(main())", *args]
        env = dict(os.environ)
        repo = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
        env["ETL_PIPELINES"] = pdir
        proc = subprocess.run(cmd, env=env, cwd=repo, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"etl CLI exited {proc.returncode}: {' '.join(cmd)}\n"
                + textwrap.indent((proc.stdout + proc.stderr)[-3000:], "  | ")
            )
        return table

    def teardown(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


# --------------------------------------------------------------------------- registry

ENGINES: dict[str, Callable[[], Engine]] = {
    "etl": Etl,
    "deltalake": DeltalakeNative,
    "deltalake-changed": lambda: DeltalakeNative("changed"),
    "deltalake-pruned": lambda: DeltalakeNative("pruned"),
    "polars": Polars,
    "pandas": Pandas,
}
DEFAULT_ENGINES = ["etl", "deltalake", "polars", "pandas"]


def make(name: str) -> Engine:
    try:
        return ENGINES[name]()
    except KeyError:
        raise SystemExit(f"unknown engine {name!r}: choose from {', '.join(ENGINES)}") from None
