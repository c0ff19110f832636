"""What a kernel declares, checked when it is declared: inputs, outputs, params, groups.

The kernel function's parameters are bound **by name**:

=================  ==========================================================
parameter name     receives
=================  ==========================================================
``<input>``        the input column as a read-only array of its declared kind
``<input>_null``   its null mask (read-only ``bool``, ``True`` = null)
``<output>``       a zero-filled array to write the output into
``<output>_null``  a ``False``-filled mask; set ``True`` to write a null
                   (only for nullable outputs: ``Int64``, ``Float64``,
                   ``boolean``, Arrow and timestamp dtypes)
``<param>``        a scalar parameter (``int64``, ``float64`` or ``bool``)
``offsets``        per-group kernels only: group ``g`` is rows
                   ``offsets[g]:offsets[g + 1]``
=================  ==========================================================

Examples
--------
>>> def f(x, x_null, y, y_null):
...     pass
>>> spec = build_spec(f, "demo.f", {"x": "int64"}, {"y": "Int64"}, {}, None, None)
>>> [a.role for a in spec.args]
['input', 'input_null', 'output', 'output_null']
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import types

from etl.errors import ConfigError
from etl.kernels._columns import KINDS, logical_kind

__all__ = ["Arg", "KernelSpec", "OutputSpec", "PARAM_TYPES", "build_spec"]

PARAM_TYPES = {"int64": np.int64, "float64": np.float64, "bool": np.bool_}
_NUMBA = {np.dtype(np.int64): types.int64, np.dtype(np.uint64): types.uint64,
          np.dtype(np.float64): types.float64, np.dtype(np.bool_): types.boolean}
_ARRAY_OF = {"int": np.int64, "uint": np.uint64, "float": np.float64, "bool": np.bool_,
             "datetime": np.int64, "timedelta": np.int64}


@dataclass(frozen=True)
class OutputSpec:
    """One declared output: ``dtype`` (pandas dtype string or ``"like:<input>"``)."""

    name: str
    dtype: str
    array: np.dtype
    nullable: bool

    @property
    def like(self) -> str | None:
        return self.dtype[5:] if self.dtype.startswith("like:") else None


@dataclass(frozen=True)
class Arg:
    """One function parameter: its ``role`` and the declared ``name`` it refers to."""

    role: str
    name: str


@dataclass(frozen=True)
class KernelSpec:
    """Everything declared about a kernel, validated."""

    name: str
    inputs: dict[str, str]
    outputs: dict[str, OutputSpec]
    params: dict[str, str]
    by: tuple[str, ...] | None
    order_by: str | None
    args: tuple[Arg, ...]
    unselected: str = "allocate"

    @property
    def grouped(self) -> bool:
        return any(a.role == "offsets" for a in self.args)

    def wants(self, role: str, name: str) -> bool:
        return Arg(role, name) in self.args

    def numba_signature(self) -> tuple:
        """Explicit numba argument types, in parameter order."""
        return tuple(self._numba_type(a) for a in self.args)

    def _numba_type(self, arg: Arg):
        if arg.role == "input":
            return types.Array(_NUMBA[KINDS[self.inputs[arg.name]]], 1, "C", readonly=True)
        if arg.role in ("input_null", "offsets"):
            dtype = types.boolean if arg.role == "input_null" else types.int64
            return types.Array(dtype, 1, "C", readonly=True)
        if arg.role == "output":
            return types.Array(_NUMBA[self.outputs[arg.name].array], 1, "C")
        if arg.role == "output_null":
            return types.Array(types.boolean, 1, "C")
        return _NUMBA[np.dtype(PARAM_TYPES[self.params[arg.name]])]


def _fail(name: str, message: str) -> ConfigError:
    return ConfigError(f"kernel {name!r}: {message}", kernel=name)


def _output_spec(kernel: str, name: str, dtype: str, inputs: dict[str, str]) -> OutputSpec:
    if isinstance(dtype, str) and dtype.startswith("like:"):
        source = dtype[5:]
        if source not in inputs:
            raise _fail(kernel, f"output {name!r} is declared {dtype!r} but {source!r} is not an "
                        f"input; declared inputs are {sorted(inputs)}")
        return OutputSpec(name, dtype, KINDS[inputs[source]], True)
    try:
        parsed = pd.api.types.pandas_dtype(dtype)
    except TypeError as exc:
        raise _fail(kernel, f"output {name!r} has unknown dtype {dtype!r}") from exc
    kind = logical_kind(pd.Series([], dtype=parsed))
    if kind not in _ARRAY_OF or (isinstance(parsed, np.dtype) and parsed.itemsize != 8
                                 and kind != "bool"):
        raise _fail(kernel, f"output {name!r} has dtype {dtype!r}; kernels write 64-bit integers, "
                    "floats, booleans or timestamps (e.g. 'int64', 'Int64', 'float64', "
                    "'Float64', 'boolean', 'datetime64[ns, UTC]')")
    nullable = not isinstance(parsed, np.dtype) or kind in ("datetime", "timedelta")
    return OutputSpec(name, str(dtype), np.dtype(_ARRAY_OF[kind]), nullable)


def _role(kernel: str, param: str, inputs, outputs, params) -> Arg:
    base = param[:-5] if param.endswith("_null") else None
    if param in inputs:
        return Arg("input", param)
    if param in outputs:
        return Arg("output", param)
    if param in params:
        return Arg("param", param)
    if param == "offsets":
        return Arg("offsets", param)
    if base in inputs:
        return Arg("input_null", base)
    if base in outputs:
        if not outputs[base].nullable:
            raise _fail(kernel, f"parameter {param!r} writes nulls but output {base!r} is "
                        f"declared {outputs[base].dtype!r}, which cannot hold nulls; declare a "
                        "nullable dtype such as 'Int64', 'Float64' or 'boolean'")
        return Arg("output_null", base)
    raise _fail(kernel, f"parameter {param!r} is not a declared input ({sorted(inputs)}), "
                f"output ({sorted(outputs)}), param ({sorted(params)}), one of their '_null' "
                "masks, or 'offsets'")


def build_spec(func, name: str, inputs, outputs, params, by, order_by,
               unselected: str = "allocate") -> KernelSpec:
    """Validate a declaration against the function's parameters.

    Raises
    ------
    ConfigError
        An unknown kind or dtype, a parameter that matches nothing, a declared
        column the function never takes, or ``by`` without ``offsets``.
    """
    inputs, params = dict(inputs or {}), dict(params or {})
    if unselected not in ("allocate", "empty"):
        raise _fail(name, f"unselected={unselected!r}; use 'allocate' or 'empty'")
    for col, kind in inputs.items():
        if kind not in KINDS:
            raise _fail(name, f"input {col!r} has kind {kind!r}; use one of {sorted(KINDS)}")
    for param, kind in params.items():
        if kind not in PARAM_TYPES:
            raise _fail(name, f"param {param!r} has type {kind!r}; use one of {sorted(PARAM_TYPES)}")
    clash = (set(inputs) & set(outputs or {})) | (set(params) & (set(inputs) | set(outputs or {})))
    if clash:
        raise _fail(name, f"names {sorted(clash)} are declared twice; inputs, outputs and params "
                    "need distinct names")
    outs = {o: _output_spec(name, o, d, inputs) for o, d in dict(outputs or {}).items()}
    if not outs:
        raise _fail(name, "declares no outputs; pass outputs={'column': 'dtype'}")
    signature = inspect.signature(func)
    bad = [p.name for p in signature.parameters.values()
           if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) or p.default is not p.empty]
    if bad:
        raise _fail(name, f"parameters {bad} use defaults, *args or **kwargs; kernels take plain "
                    "positional parameters")
    args = tuple(_role(name, p, inputs, outs, params) for p in signature.parameters)
    taken = {a.name for a in args if a.role in ("input", "output", "param")}
    unused = [n for n in [*inputs, *outs, *params] if n not in taken]
    if unused:
        raise _fail(name, f"declares {unused} but the function has no parameter of that name")
    by_tuple = (by,) if isinstance(by, str) else (tuple(by) if by is not None else None)
    spec = KernelSpec(name, inputs, outs, params, by_tuple, order_by, args, unselected)
    if by_tuple is not None and not spec.grouped:
        raise _fail(name, f"is grouped by {list(by_tuple)} but the function has no 'offsets' "
                    "parameter to receive the group boundaries")
    return spec
