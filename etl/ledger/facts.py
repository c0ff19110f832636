"""Reading what ``etl verify`` compares the ledger with: a table's history and content fingerprint.

The only I/O of verification; :func:`etl.ledger.verify.verify` decides. The
fingerprint streams the table one record batch at a time (fingerprints of
disjoint rows add up), so memory stays bounded whatever the table's size.

Examples
--------
>>> import tempfile, pyarrow as pa
>>> from deltalake import write_deltalake
>>> from etl.kernels import fingerprint_table
>>> url = tempfile.mkdtemp()
>>> data = pa.table({"k": [1, 2, 3], "v": ["a", "b", "c"]})
>>> write_deltalake(url, data)
>>> facts = read_table_facts(url, columns=["k", "v"])
>>> facts.version, facts.fingerprint == fingerprint_table(data, ["k", "v"])
(0, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from etl.errors import SourceError
from etl.io.storage import Location


@dataclass(frozen=True)
class TableFacts:
    """A table's version, full history (newest first) and content fingerprint (None if not asked)."""

    version: int
    history: list
    fingerprint: int | None


def read_table_facts(url: str, columns: list[str] | None = None,
                     storage_options: Mapping | None = None) -> TableFacts:
    """The history of the table at ``url`` and, when ``columns`` is given, the fingerprint of its rows.

    Raises
    ------
    SourceError
        The table does not exist or cannot be read.
    """
    loc = Location(url, storage_options)
    try:
        dt = DeltaTable(loc.url, storage_options=loc.delta_options)
        history = dt.history()
        fp = None if columns is None else _fingerprint(dt, list(columns))
    except TableNotFoundError as exc:
        raise SourceError(f"table {loc}: not found; expected the Delta table the pipeline writes. Check "
                          "--warehouse and the pipeline's target.", table=str(loc)) from exc
    except (DeltaError, OSError) as exc:
        raise SourceError(f"table {loc}: cannot be read for verification: {type(exc).__name__}: {exc}.",
                          table=str(loc)) from exc
    return TableFacts(dt.version(), history, fp)


def _fingerprint(dt: DeltaTable, columns: list[str]) -> int:
    from etl.kernels import fingerprint_table

    total = 0
    for batch in dt.to_pyarrow_dataset().to_batches(columns=columns):
        total += fingerprint_table(batch, columns)
    return total % 2 ** 64
