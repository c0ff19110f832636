"""Getting a Dask client: one you pass, a scheduler address, or an in-process LocalCluster.

We never schedule work ourselves: Dask's distributed scheduler does, locally
or on a remote cluster started with Dask's own deployment tools.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from etl.errors import ClusterError

log = logging.getLogger("etl.cluster")


def current_client():
    """The Dask client current in this context (``with client.as_current()`` or the default), or None."""
    from distributed import Client

    try:
        return Client.current(allow_global=True)
    except ValueError:
        return None


def local_cluster_size() -> int:
    return int(os.environ.get("ETL_WORKERS", min(4, os.cpu_count() or 1)))


def local_processes() -> bool:
    """Whether the embedded cluster runs worker processes (``ETL_LOCAL_PROCESSES=1``) or threads.

    Threads are the default: one in-process worker with a thread per core starts
    at once and imports nothing again, and the commit path's work (Arrow,
    Parquet, numba kernels) runs without the GIL. Worker processes suit
    transforms that hold the GIL (pure-Python pandas code) and isolate memory.
    """
    return os.environ.get("ETL_LOCAL_PROCESSES", "").strip().lower() in ("1", "true", "yes")


@contextlib.contextmanager
def connect(client=None, scheduler: str | None = None, security=None,
            n_workers: int | None = None) -> Iterator[object]:
    """Yield a ``distributed.Client``; close what this function opened.

    Parameters
    ----------
    client : distributed.Client, optional
        Used as is and left open (a notebook's client). Without ``client`` and
        ``scheduler``, the current default client is used if there is one, as
        ``dask.compute`` would; else an in-process LocalCluster is started.
    scheduler : str, optional
        ``tcp://host:8786`` or ``tls://...``: connect to a running cluster.
    security : distributed.Security, optional
        TLS settings for ``tls://`` schedulers.
    n_workers : int, optional
        Parallel tasks of the embedded LocalCluster (default: ``ETL_WORKERS`` or the cores, up
        to 4): threads of one in-process worker, or worker processes with
        ``ETL_LOCAL_PROCESSES=1`` (see :func:`local_processes`). Its dashboard
        (a web server on a free port; loading bokeh takes most of a second)
        starts only with ``ETL_DASHBOARD=1``.
    """
    from distributed import Client, LocalCluster

    if client is None and scheduler is None:
        client = current_client()
    if client is not None:
        with client.as_current():  # compute on it even when it is not the default client
            yield client
        return
    if scheduler:
        try:
            remote = Client(scheduler, timeout="15s", security=security, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {exc}. Check that "
                               "'dask scheduler' runs there and the address/port/TLS settings are right.",
                               scheduler=scheduler) from None
        try:
            log.info("connected to scheduler %s (dashboard %s)", scheduler, remote.dashboard_link)
            with remote.as_current():
                yield remote
        finally:
            remote.close()
        return
    slots, processes = n_workers or local_cluster_size(), local_processes()
    shape = dict(n_workers=slots, threads_per_worker=1) if processes else dict(n_workers=1, threads_per_worker=slots)
    dashboard = ":0" if os.environ.get("ETL_DASHBOARD", "").strip().lower() in ("1", "true", "yes") else None
    with LocalCluster(**shape, processes=processes, dashboard_address=dashboard,
                      silence_logs=logging.ERROR) as cluster, Client(cluster, set_as_default=False) as local:
        log.info("started a local Dask cluster: %s, %s",
                 f"{slots} worker processes" if processes else f"one in-process worker, {slots} threads",
                 f"dashboard {local.dashboard_link}" if dashboard else "no dashboard (ETL_DASHBOARD=1 starts one)")
        with local.as_current():
            yield local


def ship_code(client, module_file: str | None, module: str | None = None) -> None:
    """Upload a pipeline module found on the pipeline path to every worker (current and future).

    Only modules the registry imported from a pipelines folder (``etlp_<stem>``)
    are shipped: they exist nowhere else. A pipeline defined in an importable
    package module travels by reference like any Dask function.
    """
    from etl.define.registry import module_name as registry_name

    if not module_file or client is None or (module and module != registry_name(module_file)):
        return
    import shutil
    import tempfile
    from pathlib import Path

    from etl.define.registry import module_name

    with tempfile.TemporaryDirectory(prefix="etl-ship-") as tmp:
        copy = Path(tmp) / f"{module_name(module_file)}.py"
        shutil.copyfile(module_file, copy)
        client.upload_file(str(copy), load=True)


def warm_kernels(client, kernels: list) -> None:
    """Load the kernels' machine code on every worker (and every worker that joins later) before the run.

    So no task pays numba's one-time set-up; the framework's own hot-path
    kernels are loaded by the same call.
    """
    if client is None:
        return
    from etl.frames.kernel_apply import WarmUpKernels

    client.register_plugin(WarmUpKernels(*kernels))


def tune_workers(client) -> None:
    """Raise glibc's malloc thresholds on worker processes started by Dask's nanny
    (:mod:`etl.run.allocator`), on every current and future worker."""
    if client is None:
        return
    from etl.run.allocator import TuneMalloc

    client.register_plugin(TuneMalloc())
