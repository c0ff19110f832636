"""The result of a run: figures for the summary, the notebook and the nightly job."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field

#: The row counts of a run, as the ledger records them and the metrics export them.
ROW_COUNTS = ("rows_in", "inserted", "updated", "deleted", "unchanged", "duplicates_dropped", "stale",
              "delete_not_found", "quarantined")


@dataclass(frozen=True)
class RunResult:
    """What a run did.

    ``status`` is ``committed`` (a new table version), ``skipped`` (this batch,
    with this input, was already committed: nothing written) or ``unchanged``
    (nothing to write: every row already as in the table).

    ``stages`` holds per-stage figures: ``source_bytes_read`` (the batch's source
    files), ``table_bytes_read`` (table files a MERGE read whole to rewrite them;
    the key-column reads that locate keys are not counted), ``table_bytes_prefetched``
    (of those, the bytes handed to the OS read-ahead as soon as located, or as the
    stage starts when grouped by partition: local tables only), ``bytes_written``
    (the files committed), ``read_transform_seconds``,
    ``stage_seconds`` (from the start of read+transform to staged files, with
    ``locate_seconds``/``apply_seconds`` of a MERGE, and ``merge_groups``: ``by
    located key`` or ``by partition``, see :mod:`etl.run.stage`), ``commit_seconds``, and,
    when the run had a distributed client, ``peak_memory``: for each of
    ``read_transform``, ``stage`` (staging alone) and ``commit``, the workers'
    peak RSS as ``cluster_bytes`` (summed over workers), ``worker_bytes`` and
    ``worker`` (the worst single worker), ``worker_limit_ratio`` (the highest
    peak over a worker's memory limit) and ``workers``
    (see :mod:`etl.observe.memory`).
    """

    pipeline: str
    run_id: str
    batch: str
    table: str
    status: str
    version: int | None
    app_id: str
    rows_read: int | None = None
    rows_in: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    duplicates_dropped: int = 0
    stale: int = 0
    #: Delete requests (rows matching the pipeline's ``delete_when``) whose key the table did not hold.
    delete_not_found: int = 0
    quarantined: int = 0
    fingerprint: str | None = None
    #: How the commit changed the table's content fingerprint (16 hex digits), what ``etl verify`` adds up.
    fingerprint_delta: str | None = None
    files_added: int = 0
    files_removed: int = 0
    attempts: int = 0
    recomputed: int = 0
    wall_seconds: float = 0.0
    stages: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def ledger_rows(self) -> dict:
        """The row counts the ledger records for this run."""
        rows = {n: int(getattr(self, n)) for n in ROW_COUNTS}
        if self.rows_read is not None:
            rows["rows_read"] = int(self.rows_read)
        return rows

    def summary_rows(self) -> list[tuple[str, str]]:
        def n(v):
            return "-" if v is None else f"{v:,}" if isinstance(v, int) else str(v)

        return [("pipeline", self.pipeline), ("batch", self.batch), ("status", self.status),
                ("table", self.table), ("version", n(self.version)), ("rows read", n(self.rows_read)),
                ("rows in", n(self.rows_in)), ("inserted", n(self.inserted)), ("updated", n(self.updated)),
                ("deleted", n(self.deleted)), ("unchanged", n(self.unchanged)),
                ("duplicates dropped", n(self.duplicates_dropped)), ("older than table", n(self.stale)),
                ("deletes not found", n(self.delete_not_found)),
                ("quarantined", n(self.quarantined)),
                ("files added/removed", f"{self.files_added}/{self.files_removed}"),
                ("bytes read/written", self._bytes()),
                ("batch fingerprint", self.fingerprint or "-"), ("commit attempts", n(self.attempts)),
                ("wall time", f"{self.wall_seconds:.2f} s"), *self._memory_rows(), ("run id", self.run_id)]

    def _bytes(self) -> str:
        st = self.stages or {}
        if "bytes_written" not in st:
            return "-"
        mb = lambda v: f"{(v or 0) / 1e6:,.1f} MB"  # noqa: E731
        return (f"source {mb(st.get('source_bytes_read'))}, table {mb(st.get('table_bytes_read'))} / "
                f"{mb(st.get('bytes_written'))}")

    def _memory_rows(self) -> list[tuple[str, str]]:
        from etl.observe.memory import describe

        peaks = (self.stages or {}).get("peak_memory") or {}
        labels = {name: name.replace("read_transform", "read+transform") for name in peaks}
        width = max((len(label) for label in labels.values()), default=0)
        return [("peak memory" if i == 0 else "", f"{labels[name]:<{width}}  {describe(peak)}")
                for i, (name, peak) in enumerate(peaks.items())]

    def __str__(self) -> str:
        width = max(len(k) for k, _ in self.summary_rows())
        return "\n".join(f"{k:<{width}}  {v}" for k, v in self.summary_rows())

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                       for k, v in self.summary_rows())
        return f"<table>{rows}</table>"
