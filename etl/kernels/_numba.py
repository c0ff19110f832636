"""Numba set-up shared by every kernel: the on-disk cache folder and compile counters.

The cache folder is chosen *before* numba is imported, so numba's own
``NUMBA_CACHE_DIR`` setting points at it. The first of these that is writable
wins:

1. ``$ETL_NUMBA_CACHE_DIR``
2. ``$NUMBA_CACHE_DIR`` (a folder the operator already chose for numba)
3. ``~/.cache/etl/numba``
4. ``<tempdir>/etl-numba-<uid>``

Compiled machine code is written there on the first compile and loaded by every
later process (a worker, a test run, the next day's job), so a worker pays the
compile once per machine and a cache load once per process.

Examples
--------
>>> import os
>>> os.path.isdir(cache_dir())
True
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CompileStats", "cache_dir", "compile_counts", "jit", "record_compile"]

ENV_VAR = "ETL_NUMBA_CACHE_DIR"


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _choose_cache_dir() -> str:
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    candidates = [
        os.environ.get(ENV_VAR),
        os.environ.get("NUMBA_CACHE_DIR"),
        str(Path.home() / ".cache" / "etl" / "numba"),
        str(Path(tempfile.gettempdir()) / f"etl-numba-{uid}"),
    ]
    for candidate in candidates:
        if candidate and _writable(Path(candidate).expanduser()):
            return str(Path(candidate).expanduser())
    return tempfile.mkdtemp(prefix="etl-numba-")


_CACHE_DIR = _choose_cache_dir()
os.environ["NUMBA_CACHE_DIR"] = _CACHE_DIR

import numba  # noqa: E402  (must follow the NUMBA_CACHE_DIR set-up)

numba.config.CACHE_DIR = _CACHE_DIR


def cache_dir() -> str:
    """Return the folder numba's on-disk cache uses in this process.

    Returns
    -------
    str
        An existing, writable folder.
    """
    return _CACHE_DIR


def jit(func=None, *, cache: bool = True, inline: bool = False):
    """Compile with ``njit(cache=True, nogil=True)``; functions without a source file
    (a REPL, a notebook cell, a doctest) cannot be cached and compile in memory.

    ``inline=True`` inlines the helper into its callers at numba IR level: use it
    for small helpers called per row with array arguments, which otherwise pay
    reference counting on every call.

    Examples
    --------
    >>> @jit
    ... def twice(x):
    ...     return 2 * x
    >>> twice(21)
    42
    """
    if func is None:
        return lambda f: jit(f, cache=cache, inline=inline)
    options = {"nogil": True, "inline": "always" if inline else "never"}
    if cache:
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            pass
    return numba.njit(**options)(func)


@dataclass
class CompileStats:
    """How one kernel got its machine code in this process.

    Attributes
    ----------
    name : str
        The kernel's qualified name (``module.function``).
    compiles : int
        Fresh compilations by numba (cache misses) in this process.
    cache_loads : int
        Machine code loaded from the on-disk cache instead of compiling.
    seconds : float
        Wall time spent compiling or loading.
    pid : int
        The process these counts belong to.
    """

    name: str
    compiles: int = 0
    cache_loads: int = 0
    seconds: float = 0.0
    pid: int = field(default_factory=os.getpid)

    @property
    def materialisations(self) -> int:
        """Compiles plus cache loads: how often machine code was produced here."""
        return self.compiles + self.cache_loads

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "compiles": self.compiles,
            "cache_loads": self.cache_loads,
            "materialisations": self.materialisations,
            "seconds": round(self.seconds, 6),
            "pid": self.pid,
        }


_STATS: dict[str, CompileStats] = {}
_LOCK = threading.Lock()


def record_compile(name: str, dispatcher, signature: tuple) -> CompileStats:
    """Compile (or load) ``signature`` on ``dispatcher`` and count it under ``name``.

    A signature the dispatcher already holds is neither compiled nor counted.
    """
    with _LOCK:
        stats = _STATS.setdefault(name, CompileStats(name))
        if signature in dispatcher.overloads:
            return stats
        hits_before = dispatcher.stats.cache_hits[signature]
        started = time.perf_counter()
        dispatcher.compile(signature)
        stats.seconds += time.perf_counter() - started
        if dispatcher.stats.cache_hits[signature] > hits_before:
            stats.cache_loads += 1
        else:
            stats.compiles += 1
        return stats


def compile_counts() -> dict[str, dict]:
    """Per-kernel compile counts of *this* process, keyed by kernel name.

    Query every Dask worker with ``client.run(compile_counts)``.

    Examples
    --------
    >>> isinstance(compile_counts(), dict)
    True
    """
    with _LOCK:
        return {name: stats.as_dict() for name, stats in _STATS.items()}
