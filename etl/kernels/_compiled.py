"""One numba dispatcher per kernel per process, compiled once for its declared types.

Every copy of a kernel (``bind()`` results, unpickled copies on a worker)
shares one :class:`Compiled`, found by the kernel's token, so a worker process
compiles (or loads from the on-disk cache) each kernel at most once.
"""

from __future__ import annotations

import re
import threading

import numba

from etl.errors import ConfigError
from etl.kernels._numba import CompileStats, compile_counts, record_compile
from etl.kernels._spec import KernelSpec

__all__ = ["Compiled", "compiled_for"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REGISTRY: dict[str, "Compiled"] = {}
_LOCK = threading.Lock()


class Compiled:
    """The machine code of one kernel function in this process."""

    def __init__(self, func, spec: KernelSpec) -> None:
        self.func = func
        self.spec = spec
        self.cached = True
        self._dispatcher = None
        self._lock = threading.Lock()

    def _new_dispatcher(self):
        try:
            return numba.njit(cache=True, nogil=True)(self.func)
        except RuntimeError:  # no source file (REPL, notebook): compile in memory only
            self.cached = False
            return numba.njit(nogil=True)(self.func)

    def dispatcher(self):
        """The dispatcher, compiled for the declared signature (compiling at most once).

        Raises
        ------
        ConfigError
            numba cannot compile the function; the message names the kernel and
            gives numba's reason.
        """
        if self._dispatcher is not None:
            return self._dispatcher
        with self._lock:
            if self._dispatcher is None:
                self._dispatcher = self._compile(self._new_dispatcher())
        return self._dispatcher

    def _compile(self, dispatcher):
        signature = self.spec.numba_signature()
        try:
            record_compile(self.spec.name, dispatcher, signature)
        except Exception as exc:  # numba raises many types: typing, lowering, unsupported
            if not self.cached:
                raise self._error(exc, signature) from exc
            # A stale or foreign cache entry (e.g. the file was imported under another
            # module name) must not break the kernel: compile afresh, in memory.
            self.cached = False
            return self._compile(numba.njit(nogil=True)(self.func))
        dispatcher.disable_compile()
        return dispatcher

    def _error(self, exc: Exception, signature) -> ConfigError:
        reason = _ANSI.sub("", str(exc)).strip()
        declared = ", ".join(f"{a.name}: {t}" for a, t in zip(self.spec.args, signature))
        return ConfigError(
            f"kernel {self.spec.name!r} cannot be compiled by numba for its declared types "
            f"({declared}). numba says: {type(exc).__name__}: {reason}\n"
            "Fix the function body (nopython mode: numpy arrays and scalars only) or the "
            "declared input kinds.",
            kernel=self.spec.name, reason=reason,
        )

    def stats(self) -> dict:
        """This process's compile counts for the kernel (zeros before the first compile)."""
        return compile_counts().get(self.spec.name, CompileStats(self.spec.name).as_dict())


def compiled_for(token: str, func, spec: KernelSpec) -> Compiled:
    """The process-wide :class:`Compiled` for ``token``, created on first use."""
    with _LOCK:
        found = _REGISTRY.get(token)
        if found is None:
            found = _REGISTRY[token] = Compiled(func, spec)
        return found
