"""Checking a transform's output against the declared schema, partition by partition.

Runs on the workers before anything is written. A mismatch raises
:class:`~etl.errors.SchemaError` naming the column, the expected and the found
type; nothing is staged for that run's commit.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from etl.errors import SchemaError

DELETE_COL = "_etl_delete"
HASH_COL = "_etl_hash"
#: Each conformed row's content hash (:func:`etl.kernels.hash_table` over the schema's columns).
ROW_HASH_COL = "_etl_row_hash"


def _compatible(found: pa.DataType, expected: pa.DataType) -> bool:
    if found == expected or pa.types.is_null(found):
        return True
    if pa.types.is_integer(expected):
        return pa.types.is_integer(found) and found.bit_width <= expected.bit_width
    if pa.types.is_floating(expected):
        return pa.types.is_integer(found) or pa.types.is_floating(found)
    if pa.types.is_string(expected):
        return pa.types.is_string(found) or pa.types.is_large_string(found) or pa.types.is_string_view(found)
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(found) and (found.tz is None) == (expected.tz is None)
    if pa.types.is_date32(expected):
        return pa.types.is_date(found)
    return False


def conform(df: pd.DataFrame, schema: pa.Schema, *, delete_when: str | None = None,
            where: str = "the transform's output") -> pa.Table:
    """Check ``df`` against ``schema`` and return it as an Arrow table of exactly that schema.

    Raises
    ------
    SchemaError
        A declared column is missing, an undeclared column is present, a type
        differs, or a not-null column holds nulls.
    """
    extra = [c for c in df.columns if c not in schema.names and c != delete_when]
    missing = [c for c in schema.names if c not in df.columns]
    if missing:
        raise SchemaError(f"{where}: column {missing[0]!r} is declared ({schema.field(missing[0]).type}) "
                          f"but missing; found columns {list(df.columns)}. Produce it in the transform "
                          "or remove it from the Schema.", column=missing[0])
    if extra:
        raise SchemaError(f"{where}: column {extra[0]!r} is not in the declared schema {schema.names}. "
                          "Select only declared columns, or declare it.", column=extra[0])
    arrays = []
    for field in schema:
        try:
            arr = pa.array(df[field.name], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SchemaError(f"{where}: column {field.name!r}: expected {field.type}, found values of "
                              f"dtype {df[field.name].dtype} that Arrow cannot read ({exc}).",
                              column=field.name, expected=str(field.type), found=str(df[field.name].dtype))
        if not _compatible(arr.type, field.type):
            raise SchemaError(f"{where}: column {field.name!r}: expected {field.type}, found {arr.type} "
                              f"(pandas dtype {df[field.name].dtype}). Cast it in the transform or change "
                              "the declared Schema.", column=field.name, expected=str(field.type),
                              found=str(arr.type))
        if arr.type != field.type:
            try:
                arr = arr.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(f"{where}: column {field.name!r}: cannot convert {arr.type} to "
                                  f"{field.type} without loss: {exc}.", column=field.name) from None
        if not field.nullable and arr.null_count:
            raise SchemaError(f"{where}: column {field.name!r} is declared not-null (a merge key or in "
                              f"not_null) but holds {arr.null_count} null(s). Drop or fix those rows.",
                              column=field.name, nulls=arr.null_count)
        arrays.append(arr)
    table = pa.Table.from_arrays(arrays, schema=schema)
    if delete_when:
        flag = df[delete_when] if delete_when in df.columns else pd.Series(False, index=df.index)
        table = table.append_column(DELETE_COL, pa.array(flag.fillna(False).astype(bool).to_numpy()))
    return table
