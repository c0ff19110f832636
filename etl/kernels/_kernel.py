"""The :func:`kernel` decorator and the :class:`Kernel` it returns.

Examples
--------
A row kernel fills its outputs; nulls in, nulls out:

>>> import pandas as pd
>>> from etl.kernels import kernel
>>> @kernel(inputs={"price": "float64", "qty": "int64"}, outputs={"total": "Float64"})
... def line_total(price, qty, qty_null, total, total_null):
...     for i in range(price.size):
...         total[i] = price[i] * qty[i]
...         total_null[i] = qty_null[i]
>>> df = pd.DataFrame({"price": [2.0, 3.0], "qty": pd.array([4, None], dtype="Int64")})
>>> line_total(df)["total"].tolist()
[8.0, <NA>]

Rebind columns, outputs and params without recompiling:

>>> renamed = line_total.bind(columns={"qty": "n"}, outputs={"total": "sum"})
>>> renamed(pd.DataFrame({"price": [1.5], "n": [2]}))["sum"].tolist()
[3.0]

A per-group kernel receives group ``offsets``; rows come sorted by ``order_by``:

>>> @kernel(inputs={"x": "float64"}, outputs={"first": "float64"}, by="k", order_by="t")
... def first_x(x, offsets, first):
...     for g in range(offsets.size - 1):
...         for i in range(offsets[g], offsets[g + 1]):
...             first[i] = x[offsets[g]]
>>> frame = pd.DataFrame({"k": [1, 2, 1], "t": [5, 1, 3], "x": [10.0, 20.0, 30.0]})
>>> first_x(frame)["first"].tolist()
[30.0, 20.0, 30.0]
>>> warm_up(first_x)[first_x.name]["materialisations"]
1
"""

from __future__ import annotations

import importlib
import uuid
from dataclasses import dataclass, field, replace
from typing import Literal

import pandas as pd

from etl.errors import ConfigError
from etl.kernels._apply import run_on_pandas
from etl.kernels._compiled import Compiled, compiled_for
from etl.kernels._grouping import warm_up_grouping
from etl.kernels._spec import KernelSpec, build_spec
from etl.kernels._warm import warm_up_internals

__all__ = ["Binding", "Kernel", "kernel", "warm_up"]


@dataclass(frozen=True)
class Binding:
    """Where a kernel reads and writes in a frame, and its parameter values."""

    columns: dict = field(default_factory=dict)
    outputs: dict | None = None
    by: tuple[str, ...] | None = None
    order_by: str | None = None
    params: dict = field(default_factory=dict)


class Kernel:
    """A numba-compiled function over numpy arrays with declared columns.

    Build one with :func:`kernel`. Apply it with ``k(df)`` on a pandas or Dask
    frame; the result is the frame with the output columns added (or
    replaced), index and row order unchanged.
    """

    def __init__(self, func, spec: KernelSpec, binding: Binding, token: str) -> None:
        self.func, self.spec, self.binding, self.token = func, spec, binding, token
        self.__doc__ = func.__doc__
        self._compiled: Compiled = compiled_for(token, func, spec)

    # -- declaration -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def by(self) -> tuple[str, ...] | None:
        """Key columns of a per-group kernel (``None`` for a row kernel)."""
        return self.binding.by

    @property
    def order_by(self) -> str | None:
        return self.binding.order_by

    @property
    def grouped(self) -> bool:
        return self.spec.grouped

    def column_of(self, name: str) -> str:
        """Frame column bound to input ``name``."""
        return self.binding.columns.get(name, name)

    def output_columns(self) -> dict[str, str]:
        """``{output name: frame column}`` of the outputs this kernel adds."""
        if self.binding.outputs is None:
            return {o: o for o in self.spec.outputs}
        return dict(self.binding.outputs)

    def bind(self, *, columns=None, outputs=None, by=None, order_by=None, **params) -> "Kernel":
        """A copy reading/writing other columns or with parameter values; shares machine code.

        Parameters
        ----------
        columns : dict, optional
            ``{input name: frame column}`` for inputs whose column has another name.
        outputs : dict, optional
            ``{output name: frame column}``; only these outputs are added.
        by : str or list of str, optional
            Key columns (per-group kernels).
        order_by : str, optional
            Column ordering rows within a group.
        **params
            Values of declared scalar params.

        Examples
        --------
        See the module docstring.
        """
        unknown = sorted(set(params) - set(self.spec.params))
        unknown += sorted(set(columns or {}) - set(self.spec.inputs))
        unknown += sorted(set(outputs or {}) - set(self.spec.outputs))
        if unknown:
            raise ConfigError(f"kernel {self.name!r} has no input, output or param named "
                              f"{unknown}", kernel=self.name)
        b = self.binding
        binding = replace(
            b, columns={**b.columns, **(columns or {})},
            outputs=dict(outputs) if outputs is not None else b.outputs,
            by=((by,) if isinstance(by, str) else tuple(by)) if by is not None else b.by,
            order_by=order_by if order_by is not None else b.order_by,
            params={**b.params, **params})
        return Kernel(self.func, self.spec, binding, self.token)

    # -- compilation -----------------------------------------------------------------
    def check(self) -> "Kernel":
        """Compile now for the declared types; raise :class:`ConfigError` if numba cannot.

        Also runs the kernel once on an empty synthetic input. Call it when a
        pipeline is planned so a broken kernel fails before any data moves.
        """
        self._compiled.dispatcher()
        if self.binding.by is None and self.grouped:
            raise ConfigError(f"kernel {self.name!r} is per-group but has no key columns; "
                              f"bind them: {self.name.rsplit('.', 1)[-1]}.bind(by=[...])",
                              kernel=self.name)
        columns = {self.column_of(i): _EMPTY[k] for i, k in self.spec.inputs.items()}
        for key in [*(self.binding.by or ()), self.binding.order_by]:
            if key is not None:
                columns.setdefault(key, "int64")
        empty = pd.DataFrame({c: pd.Series([], dtype=d) for c, d in columns.items()})
        self._run(empty, check_params=False)
        return self

    def warm_up(self) -> dict:
        """Compile or load from the on-disk cache now; return :meth:`compile_stats`."""
        self._compiled.dispatcher()
        if self.grouped:
            warm_up_grouping()
        return self.compile_stats()

    def compile_stats(self) -> dict:
        """This process's compile counts: ``compiles``, ``cache_loads``, ``seconds``, ``pid``."""
        return {**self._compiled.stats(), "cached_on_disk": self._compiled.cached}

    # -- application -----------------------------------------------------------------
    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """Run on a pandas frame: a copy of ``df`` with the output columns set."""
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"Kernel.apply takes a pandas DataFrame, got {type(df).__name__}; "
                            "call the kernel itself (k(df)) for Dask frames")
        return self._run(df, check_params=True)

    def __call__(self, df):
        """Apply to a pandas frame, or lazily to a Dask frame (see ``etl.frames``)."""
        if isinstance(df, pd.DataFrame):
            return self.apply(df)
        from etl.frames.kernel_apply import apply_kernel  # the only bridge to dask

        return apply_kernel(df, self)

    def meta(self, empty: pd.DataFrame) -> pd.DataFrame:
        """The empty frame ``apply`` would return for ``empty``'s columns."""
        out = empty.iloc[:0].copy()
        for name, column in self.output_columns().items():
            out[column] = pd.Series([], dtype=self._output_dtype(name, out), index=out.index)
        return out

    def _output_dtype(self, name: str, frame: pd.DataFrame):
        spec = self.spec.outputs[name]
        return frame[self.column_of(spec.like)].dtype if spec.like else spec.dtype

    def _run(self, df: pd.DataFrame, check_params: bool) -> pd.DataFrame:
        return run_on_pandas(self, df, check_params)

    # -- identity ----------------------------------------------------------------------
    def __repr__(self) -> str:
        kind = f"per-group by {list(self.by)}" if self.by else "per-row"
        return f"<Kernel {self.name} {kind} -> {self.output_columns()}>"

    def __dask_tokenize__(self):
        b = self.binding
        return ("etl.Kernel", self.token, repr((b.columns, b.outputs, b.by, b.order_by, b.params)))

    def __reduce__(self):
        module, _, qualname = self.name.rpartition(".")
        if "<locals>" not in qualname:
            try:
                found = importlib.import_module(module)
                for part in qualname.split("."):
                    found = getattr(found, part)
                if isinstance(found, Kernel) and found.token == self.token:
                    return (_by_reference, (module, qualname, self.binding))
            except (ImportError, AttributeError):
                pass
        return (_by_value, (self.func, self.spec, self.binding, self.token))


_EMPTY = {"int64": "int64", "uint64": "uint64", "float64": "float64", "bool": "bool",
          "codes": "int64"}


def _by_reference(module: str, qualname: str, binding: Binding) -> Kernel:
    found = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return Kernel(found.func, found.spec, binding, found.token)


def _by_value(func, spec: KernelSpec, binding: Binding, token: str) -> Kernel:
    return Kernel(func, spec, binding, token)


def kernel(func=None, *, inputs: dict[str, str], outputs: dict[str, str],
           params: dict[str, str] | None = None, by: str | list[str] | None = None,
           order_by: str | None = None, name: str | None = None,
           unselected: Literal["allocate", "empty"] = "allocate") -> Kernel:
    """Declare a numba kernel over named numpy arrays.

    Parameters
    ----------
    inputs : dict
        ``{input: kind}``, kind one of ``"int64"``, ``"uint64"``, ``"float64"``,
        ``"bool"``, ``"codes"`` (see :mod:`etl.kernels._columns`). The input
        name is the frame column unless rebound with :meth:`Kernel.bind`.
    outputs : dict
        ``{output: dtype}``: a pandas dtype (``"float64"``, ``"Int64"``,
        ``"datetime64[ns, UTC]"``, ``"int64[pyarrow]"``...) or
        ``"like:<input>"`` for the input column's own dtype.
    params : dict, optional
        ``{param: type}`` scalar parameters, type ``"int64"``, ``"float64"`` or
        ``"bool"``; give values with :meth:`Kernel.bind`.
    by : str or list of str, optional
        Key columns. A per-group kernel takes an ``offsets`` parameter; rows of
        a key are contiguous and never span two Dask partitions.
    order_by : str, optional
        Column ordering rows inside each group (nulls first, stable).
    name : str, optional
        Defaults to ``module.qualname`` of the function.
    unselected : {"allocate", "empty"}, default "allocate"
        What outputs left out by ``bind(outputs=...)`` receive: full arrays
        that are then dropped, or (``"empty"``) zero-length arrays, which
        saves memory but obliges the function to test ``out.size`` before
        writing: numba does not check bounds.

    Returns
    -------
    Kernel

    Raises
    ------
    ConfigError
        The declaration does not match the function's parameters.
    """
    def decorate(f) -> Kernel:
        qualified = name or f"{f.__module__}.{f.__qualname__}"
        spec = build_spec(f, qualified, inputs, outputs, params, by, order_by, unselected)
        if order_by is not None and not spec.grouped:
            raise ConfigError(f"kernel {qualified!r}: order_by needs a per-group kernel "
                              "(an 'offsets' parameter and by=...)", kernel=qualified)
        binding = Binding(by=spec.by, order_by=order_by)
        return Kernel(f, spec, binding, f"{qualified}:{uuid.uuid4().hex}")

    return decorate(func) if func is not None else decorate


def warm_up(*kernels: Kernel) -> dict[str, dict]:
    """Compile (or load from the on-disk cache) each kernel now, in this process.

    Also loads the framework's own helpers: hashing and key matching always, so
    ``warm_up()`` with no kernels prepares the MERGE hot paths, and grouping when
    there are kernels to run. Run it where
    the work will run, e.g. on every Dask worker through
    :class:`etl.frames.kernel_apply.WarmUpKernels`, so the first task does not
    pay for it.

    Returns
    -------
    dict
        ``{kernel name: compile stats}`` (see :meth:`Kernel.compile_stats`).
    """
    warm_up_internals(grouping=bool(kernels))
    return {k.name: k.warm_up() for k in kernels}
