"""Sources: where a pipeline reads, in which format, and how the input is partitioned.

A source URL is an fsspec URL or local path. It may hold two placeholders:
``{warehouse}`` (the run's warehouse root) and ``{date}`` (the batch date, when
the input is partitioned by path). A source partitioned by a column instead
names it with ``date_column``; rows of other dates are filtered out.

Examples
--------
>>> s = Source.parquet("{warehouse}/raw/orders/ds={date}/*.parquet")
>>> s.partitioned_by_path, s.format
(True, 'parquet')
>>> Source.delta("{warehouse}/lineitem", version=3).version
3
>>> Source.csv("{warehouse}/raw/events/*.csv", on_malformed="quarantine").on_malformed
'quarantine'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from etl.errors import ConfigError

FORMATS = ("parquet", "csv", "json", "delta")
ON_MALFORMED = ("fail", "quarantine")


@dataclass(frozen=True)
class Source:
    """One input of a pipeline.

    Parameters
    ----------
    url : str
        fsspec URL, glob or Delta table URL; may use ``{warehouse}`` and ``{date}``.
    format : {"parquet", "csv", "json", "delta"}
        ``json`` means JSON lines.
    date_column : str, optional
        Column holding the batch date, for inputs not partitioned by path.
    version : int, optional
        Delta sources only: read this table version instead of the latest.
    read_options : mapping, optional
        Extra keyword arguments for the reader (``sep=";"`` for CSV ...).
    storage_options : mapping, optional
        Options for the store (endpoint, region ...). Credentials belong in the
        environment; whatever is given here is never logged or committed.
    on_malformed : {"fail", "quarantine"}
        What a file that cannot be parsed (truncated Parquet, broken CSV or
        JSON lines) does to its batch. ``"fail"`` (default): the batch fails
        naming the file and commits nothing. ``"quarantine"``: the file is set
        aside whole, contributing no rows, with one record in the quarantine
        table (check ``malformed_file``), committed with the batch's good rows.
        Every file is then read twice (a parallel check before the read), so
        opt in only where a bad file should not stop the batch. Parquet, CSV
        and JSON sources only.
    """

    url: str
    format: str
    date_column: str | None = None
    version: int | None = None
    read_options: Mapping[str, Any] = field(default_factory=dict)
    storage_options: Mapping[str, Any] | None = field(default=None, repr=False)
    on_malformed: str = "fail"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"source {self.url!r}: unknown format {self.format!r}; expected one of {FORMATS}.")
        if self.on_malformed not in ON_MALFORMED:
            raise ConfigError(f"source {self.url!r}: on_malformed={self.on_malformed!r}; expected one of "
                              f"{ON_MALFORMED}.", value=self.on_malformed)
        if self.on_malformed == "quarantine" and self.format == "delta":
            raise ConfigError(f"source {self.url!r}: on_malformed='quarantine' applies to Parquet, CSV and JSON "
                              "sources; a Delta table's files are committed data and are never set aside.")
        if self.version is not None and self.format != "delta":
            raise ConfigError(f"source {self.url!r}: version= applies to Delta sources only.")
        if self.version is not None and (not isinstance(self.version, int) or self.version < 0):
            raise ConfigError(f"source {self.url!r}: version must be a non-negative int, found {self.version!r}.")
        if self.partitioned_by_path and self.date_column:
            raise ConfigError(f"source {self.url!r}: use either '{{date}}' in the URL or date_column=, not both.")

    @property
    def partitioned_by_path(self) -> bool:
        return "{date}" in self.url

    @classmethod
    def parquet(cls, url: str, **kw: Any) -> "Source":
        return cls(url, "parquet", **kw)

    @classmethod
    def csv(cls, url: str, **kw: Any) -> "Source":
        return cls(url, "csv", **kw)

    @classmethod
    def jsonl(cls, url: str, **kw: Any) -> "Source":
        return cls(url, "json", **kw)

    @classmethod
    def delta(cls, url: str, version: int | None = None, **kw: Any) -> "Source":
        return cls(url, "delta", version=version, **kw)
