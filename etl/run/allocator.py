"""glibc malloc settings for Dask worker processes.

Dask's nanny starts each worker process with ``MALLOC_TRIM_THRESHOLD_=65536``
so that freed memory goes back to the operating system at once. Setting any
such variable also freezes glibc's mmap threshold at its 128 KiB default, so
every NumPy array above that size (the key hashes of a 700,000-row file are
5.6 MB) is a fresh ``mmap``: page-faulted in, zeroed, unmapped again when
freed, file after file. On the SF10 MERGE this kernel work was a sixth of the
workers' CPU time.

:class:`TuneMalloc` raises the two thresholds on each worker to
:data:`MMAP_THRESHOLD` and :data:`TRIM_THRESHOLD`: arrays up to 32 MiB are
reused from the heap, and at most 128 MiB of free heap top is kept before it is
returned. Workers that did not get such a variable keep glibc's own adaptive
thresholds. ``ETL_MALLOC_TUNING=0`` turns it off; thresholds set larger than
ours in the worker's environment are kept.

Arrow's own buffers come from mimalloc, which hands freed memory back to the
operating system a second after it is freed (pyarrow 26's build): file after
file, a rewrite faults its ~100 MB of buffers in afresh, the kernel zeroing
each page (a tenth of the workers' CPU time on the SF10 MERGE). Keeping them
ten seconds, memory still goes back soon after a stage ends, and the SF10
spread MERGE ran 23.4 s instead of 25.9 s (mean of three paired runs). :func:`tune_arrow_allocator`, called
when ``etl`` is imported, sets ``MIMALLOC_PURGE_DELAY`` to
:data:`PURGE_DELAY_MS` in the environment unless it is set already. mimalloc
reads it when pyarrow loads, so it takes effect in every process started from
this one (Dask's worker processes included) and in this process if pyarrow
was not loaded before ``etl``. ``ETL_MALLOC_TUNING=0`` leaves it alone too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Mapping

from distributed.diagnostics.plugin import WorkerPlugin

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 128 << 20
#: How long mimalloc keeps freed memory before giving it back to the OS, ms (pyarrow's build: 1000).
PURGE_DELAY_MS = 10_000
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
_ENV = {"trim_threshold": "MALLOC_TRIM_THRESHOLD_", "mmap_threshold": "MALLOC_MMAP_THRESHOLD_"}

#: What :func:`tune_malloc` applied in this process (empty: nothing).
APPLIED: dict = {}


def malloc_settings(environ: Mapping[str, str]) -> dict:
    """The glibc thresholds to set in a process with this environment (empty: leave malloc alone).

    Examples
    --------
    >>> malloc_settings({"MALLOC_TRIM_THRESHOLD_": "65536"})
    {'mmap_threshold': 33554432, 'trim_threshold': 134217728}
    >>> malloc_settings({})  # glibc's adaptive thresholds are still in effect
    {}
    >>> malloc_settings({"MALLOC_TRIM_THRESHOLD_": "65536", "ETL_MALLOC_TUNING": "0"})
    {}
    >>> malloc_settings({"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": "67108864"})
    {'trim_threshold': 134217728}
    """
    if environ.get("ETL_MALLOC_TUNING", "1").strip() == "0":
        return {}
    if not any(name in environ for name in _ENV.values()):
        return {}
    wanted = {"mmap_threshold": MMAP_THRESHOLD, "trim_threshold": TRIM_THRESHOLD}
    out = {}
    for key, value in wanted.items():
        try:
            current = int(environ.get(_ENV[key], "0"))
        except ValueError:
            current = 0
        if current < value:
            out[key] = value
    return out


def arrow_allocator_settings(environ: Mapping[str, str]) -> dict:
    """The environment variables that tune Arrow's allocator, for a process with this environment.

    Examples
    --------
    >>> arrow_allocator_settings({})
    {'MIMALLOC_PURGE_DELAY': '10000'}
    >>> arrow_allocator_settings({"MIMALLOC_PURGE_DELAY": "-1"})  # the user's choice stays
    {}
    >>> arrow_allocator_settings({"ETL_MALLOC_TUNING": "0"})
    {}
    """
    if environ.get("ETL_MALLOC_TUNING", "1").strip() == "0" or "MIMALLOC_PURGE_DELAY" in environ:
        return {}
    return {"MIMALLOC_PURGE_DELAY": str(PURGE_DELAY_MS)}


def tune_arrow_allocator(environ: dict | None = None) -> dict:
    """Put :func:`arrow_allocator_settings` into ``environ`` (default: this process's); return them."""
    environ = os.environ if environ is None else environ
    settings = arrow_allocator_settings(environ)
    environ.update(settings)
    return settings


def tune_malloc(environ: Mapping[str, str] | None = None) -> dict:
    """Apply :func:`malloc_settings` to this process; return what was applied (nothing off glibc)."""
    settings = malloc_settings(os.environ if environ is None else environ)
    if not settings:
        return {}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt): nothing to tune
        return {}
    params = {"trim_threshold": _M_TRIM_THRESHOLD, "mmap_threshold": _M_MMAP_THRESHOLD}
    for key, value in settings.items():
        if mallopt(params[key], value) != 1:
            log.debug("mallopt(%s=%d) refused", key, value)
            return dict(APPLIED)
        APPLIED[key] = value
    return dict(APPLIED)


class TuneMalloc(WorkerPlugin):
    """Worker plugin: :func:`tune_malloc` on every current and future worker.

    Examples
    --------
    >>> TuneMalloc().name
    'etl-tune-malloc'
    """

    name = "etl-tune-malloc"

    def setup(self, worker) -> None:
        tune_malloc()
