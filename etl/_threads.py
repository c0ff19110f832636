"""Graph building from several threads at once, made safe on Python < 3.12.

Before 3.12, ``functools.cached_property`` computes under ONE lock per property,
shared by every instance of the class. dask-expr nests such properties
(``divisions``, ``ndim``, ``_meta``, ``Concat._divisions`` ...), so two threads
building graphs at once (a backfill with ``concurrency > 1``, or a driver thread
beside the in-process scheduler's offload thread) can take two of those locks in
opposite orders and deadlock forever, while the run's heartbeat keeps its lease
alive. CPython 3.12 removed the lock (gh-87634); this removes it from the
cached properties of Dask's classes, as 3.12 does.
"""

from __future__ import annotations

import functools
import sys


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False


_DASK = ("dask.", "distributed.")


def _is_dask(module: str | None) -> bool:
    return bool(module) and (module == "dask" or module.startswith(_DASK))


def unlock_dask_cached_properties() -> int:
    """Drop the class-wide lock of every ``cached_property`` of Dask's classes, loaded now or later.

    Returns how many loaded ones it unlocked.
    """
    if sys.version_info >= (3, 12):
        return 0
    init = functools.cached_property.__init__
    if not getattr(init, "_etl_unlocks", False):
        def unlocking_init(self, func):
            init(self, func)
            if _is_dask(getattr(func, "__module__", None)):
                self.lock = _NoLock()

        unlocking_init._etl_unlocks = True
        functools.cached_property.__init__ = unlocking_init
    n = 0
    for name, module in list(sys.modules.items()):
        if not _is_dask(name) or module is None:
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, type) and obj.__module__ == name:
                for attr in vars(obj).values():
                    if isinstance(attr, functools.cached_property) and not isinstance(attr.lock, _NoLock):
                        attr.lock = _NoLock()
                        n += 1
    return n
