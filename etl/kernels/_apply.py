"""Run a kernel on one pandas frame: columns in, arrays through numba, columns out.

1. Each input column becomes a numpy array plus a null mask (:mod:`._columns`).
2. A per-group kernel gets the rows moved so each group is contiguous and in
   ``order_by`` order, plus group ``offsets`` (:mod:`._grouping`).
3. Output arrays are allocated, the compiled function fills them.
4. Outputs are put back in the frame's row order and become pandas columns
   of their declared dtypes; the frame's index and other columns are kept.

:func:`run_in_row_order` is the shortcut for running state (the library's
sessions and running aggregates) over rows that already arrive in time order:
one pass with per-key state, no grouping at all.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etl.errors import ConfigError, SchemaError
from etl.kernels._columns import Arrays, logical_kind, to_numpy
from etl.kernels._outputs import from_numpy
from etl.kernels._grouping import group_layout, group_slots
from etl.kernels._numba import jit
from etl.kernels._spec import PARAM_TYPES

__all__ = ["run_in_row_order", "run_on_pandas"]

_NO_NULLS = np.zeros(0, np.bool_)


def run_on_pandas(kernel, df: pd.DataFrame, check_params: bool = True) -> pd.DataFrame:
    """A shallow copy of ``df`` with ``kernel``'s selected outputs set."""
    dispatcher = kernel._compiled.dispatcher()
    arrays = _inputs(kernel, df)
    layout = offsets = None
    if kernel.grouped:
        layout = _layout(kernel, df)
        offsets = layout.offsets
        arrays = {k: _gather(kernel, df, k, a, layout) for k, a in arrays.items()}
    outs = _allocate(kernel, len(df))
    dispatcher(*_args(kernel, arrays, outs, offsets, check_params))
    return _result(kernel, df, arrays, outs, layout)


def run_in_row_order(kernel, df: pd.DataFrame, time: str, fill) -> pd.DataFrame | None:
    """Fill ``kernel``'s outputs in one pass over the rows in their own order, if it can.

    When input ``time`` (bound to the kernel's ``order_by`` column) never
    decreases over its non-null rows, each group's rows already come in
    ``order_by`` order, so a function keeping per-key state can run straight
    through the rows: no grouping, no moving columns. ``fill`` gets
    ``(keys, low, nslots, ties, inputs, outputs)``: row ``i`` belongs to key
    slot ``keys[i] - low`` (see :func:`~etl.kernels._grouping.group_slots`),
    ``ties`` counts non-null rows whose time equals the previous non-null
    row's, ``inputs`` maps each input to ``(values, null)`` and ``outputs``
    each output to ``(values, null)`` as :func:`run_on_pandas` would pass them
    (null masks of inputs without nulls are empty). It must give exactly the
    kernel's results.

    Returns
    -------
    pandas.DataFrame or None
        ``None`` when the rows are not in time order: run the kernel instead.
    """
    arrays = _inputs(kernel, df)
    order = arrays[time]
    ties = _ties_in_order(order.values, _NO_NULLS if order.null is None else order.null)
    if ties < 0:
        return None
    keys, low, nslots = group_slots(df, list(kernel.by))
    outs = _allocate(kernel, len(df))
    inputs = {k: (a.values, _NO_NULLS if a.null is None else a.null) for k, a in arrays.items()}
    fill(keys, np.int64(low), nslots, ties, inputs, outs)
    return _result(kernel, df, arrays, outs, None)


@jit
def _ties_in_order(values, null):
    """-1 if the non-null ``values`` ever decrease, else how many equal their predecessor."""
    has_null = null.size > 0
    prev, ties, seen = np.int64(0), 0, False
    for i in range(values.size):
        if has_null and null[i]:
            continue
        v = values[i]
        if seen and v < prev:
            return -1
        ties += seen and v == prev
        prev, seen = v, True
    return ties


def _result(kernel, df: pd.DataFrame, arrays, outs, layout) -> pd.DataFrame:
    result = df.copy(deep=False)
    for name, column in kernel.output_columns().items():
        values, null = outs[name]
        null = null if null.size and null.any() else None
        if layout is not None:  # the kernel's output arrays are ours: reuse their memory
            values = layout.to_rows(values, reuse=True)
            null = None if null is None else layout.to_rows(null, reuse=True)
        like = kernel.spec.outputs[name].like
        result[column] = from_numpy(values, null, kernel._output_dtype(name, df), df.index, column,
                                    arrays[like].uniques if like else None)
    return result


def _inputs(kernel, df: pd.DataFrame) -> dict[str, Arrays]:
    arrays = {}
    for name, kind in kernel.spec.inputs.items():
        column = kernel.column_of(name)
        if column not in df.columns:
            raise SchemaError(f"kernel {kernel.name!r} reads column {column!r}, which is not in "
                              f"the frame (columns: {list(df.columns)})", column=column)
        arrays[name] = to_numpy(df[column], kind)
        if arrays[name].null is not None and not kernel.spec.wants("input_null", name):
            raise SchemaError(
                f"column {column!r} has {int(arrays[name].null.sum())} nulls but kernel "
                f"{kernel.name!r} takes no '{name}_null' mask; add that parameter to handle "
                "nulls, or fill or filter them first", column=column, kernel=kernel.name)
    return arrays


def _gather(kernel, df: pd.DataFrame, name: str, arrays: Arrays, layout) -> Arrays:
    """``arrays`` in group order; the ``order_by`` column reuses the sorted key."""
    null = None if arrays.null is None else layout.to_groups(arrays.null)
    column = kernel.column_of(name)
    if (layout.key is not None and column == kernel.order_by and kernel.spec.inputs[name] == "int64"
            and logical_kind(df[column]) in ("int", "datetime", "timedelta")):
        return Arrays(layout.key, null, arrays.uniques)  # same int64 values, already in group order
    return Arrays(layout.to_groups(arrays.values), null, arrays.uniques)


def _layout(kernel, df: pd.DataFrame):
    if not kernel.by:
        raise ConfigError(f"kernel {kernel.name!r} is per-group but has no key columns; "
                          "bind them with .bind(by=[...])", kernel=kernel.name)
    return group_layout(df, list(kernel.by), kernel.order_by)


def _allocate(kernel, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Zeroed output arrays; masks only where the function takes them.

    With ``unselected="empty"`` outputs the binding does not keep get empty arrays.
    """
    keep = set(kernel.output_columns())
    skip = kernel.spec.unselected == "empty"
    outs = {}
    for name, spec in kernel.spec.outputs.items():
        size = 0 if skip and name not in keep else n
        masked = size if kernel.spec.wants("output_null", name) else 0
        outs[name] = (np.zeros(size, spec.array), np.zeros(masked, np.bool_))
    return outs


def _args(kernel, arrays, outs, offsets, check_params: bool) -> list:
    args = []
    for arg in kernel.spec.args:
        if arg.role == "input":
            args.append(arrays[arg.name].values)
        elif arg.role == "input_null":
            null = arrays[arg.name].null
            args.append(null if null is not None else np.zeros(len(arrays[arg.name].values), bool))
        elif arg.role in ("output", "output_null"):
            args.append(outs[arg.name][arg.role == "output_null"])
        elif arg.role == "offsets":
            args.append(offsets)
        else:
            args.append(_param(kernel, arg.name, check_params))
    return args


def _param(kernel, name: str, required: bool):
    kind = PARAM_TYPES[kernel.spec.params[name]]
    if name not in kernel.binding.params:
        if not required:
            return kind(0)
        raise ConfigError(f"kernel {kernel.name!r} needs a value for param {name!r}; "
                          f"bind it: .bind({name}=...)", kernel=kernel.name)
    return kind(kernel.binding.params[name])

