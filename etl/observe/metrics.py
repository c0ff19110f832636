"""Run metrics for Prometheus.

A nightly job writes the metrics of its run to a ``.prom`` file in
node-exporter's textfile-collector folder; Prometheus scrapes them with the
host's other metrics. Every sample is a gauge describing the **last** run of a
pipeline (a textfile is a snapshot, not a counter)::

    etl_run_status{pipeline,status}                 1 for the outcome, 0 for the others
    etl_run_exit_code{pipeline}                     0, or the CLI's exit code (3 config, 5 source ...)
    etl_run_rows{pipeline,kind}                     read, in, inserted, updated, deleted, unchanged ...
    etl_run_files{pipeline,kind}                    added, removed
    etl_run_duration_seconds{pipeline,stage}        total, and each stage the run timed
    etl_run_bytes{pipeline,kind}                    source_read, table_read (files a MERGE read whole), written
    etl_run_table_version{pipeline,table}           the table version the run committed or found
    etl_run_commit_attempts{pipeline}               commit attempts (conflicts make more)
    etl_run_peak_memory_bytes{pipeline,stage,scope}  workers' peak RSS per stage: scope cluster (summed
                                                    over workers) or worker (the worst single worker)
    etl_run_peak_memory_limit_ratio{pipeline,stage}  the worst worker's peak RSS over its memory limit
    etl_run_info{pipeline,batch,run_id,table}       1, carrying the identifiers
    etl_run_timestamp_seconds{pipeline}             when the run ended (Unix time)
    etl_run_last_success_timestamp_seconds{pipeline}  when a run last succeeded (kept across failures)

Alert on ``etl_run_exit_code != 0`` and on
``time() - etl_run_last_success_timestamp_seconds > 26 * 3600``; warn on
``etl_run_peak_memory_limit_ratio > 0.8`` (Dask pauses a worker there and
restarts it at 0.95). The memory figures are there when the run had a
distributed client (see :mod:`etl.observe.memory`), for the stages
``read_transform``, ``stage`` and ``commit``.

The file is replaced atomically (temporary file in the same folder, then
rename), so the collector never reads half a file.

From a shell (what ``cluster/ci/nightly.sh`` does)::

    etl run NAME --json > result.json && python -m etl.observe.metrics result.json etl.prom
    python -m etl.observe.metrics --failed NAME --exit-code 5 etl.prom

Examples
--------
>>> from etl.run.result import RunResult
>>> r = RunResult("daily", "r1", "2026-01-02", "/wh/t", "committed", 3, "app", inserted=7, wall_seconds=1.5)
>>> text = prometheus_text(r, now=1700000000)
>>> 'etl_run_rows{pipeline="daily",kind="inserted"} 7' in text.splitlines()
True
>>> 'etl_run_status{pipeline="daily",status="committed"} 1' in text.splitlines()
True
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable

from etl.observe.report import performance_report  # noqa: F401  (its former home)
from etl.run.result import ROW_COUNTS

STATUSES = ("committed", "skipped", "unchanged", "failed")
SUCCESS = ("committed", "skipped", "unchanged")

_HELP = {
    "etl_run_info": "Identifiers of the last run (value always 1).",
    "etl_run_status": "Outcome of the last run: 1 for its status, 0 for the others.",
    "etl_run_exit_code": "Exit code of the last run (0 on success).",
    "etl_run_rows": "Rows of the last run by kind.",
    "etl_run_files": "Data files the last run added and removed.",
    "etl_run_duration_seconds": "Wall time of the last run, total and per stage.",
    "etl_run_bytes": "Bytes the last run read from its sources and its table, and wrote to its table.",
    "etl_run_table_version": "Delta table version the last run committed or found.",
    "etl_run_commit_attempts": "Commit attempts of the last run.",
    "etl_run_peak_memory_bytes": "Peak worker RSS per stage of the last run: summed (cluster) or worst worker.",
    "etl_run_peak_memory_limit_ratio": "Highest peak RSS over memory limit of any worker, per stage of the last run.",
    "etl_run_timestamp_seconds": "When the last run ended (Unix time).",
    "etl_run_last_success_timestamp_seconds": "When a run of this pipeline last succeeded (Unix time).",
}


class _Families:
    """Samples grouped by metric name, each family once with its HELP and TYPE lines."""

    def __init__(self) -> None:
        self._samples: dict[str, list[str]] = {}

    def add(self, name: str, labels: dict, value) -> None:
        if value is None:
            return
        body = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
        self._samples.setdefault(name, []).append(f"{name}{{{body}}} {number(value)}")

    def text(self) -> str:
        out = []
        for name, samples in self._samples.items():
            out += [f"# HELP {name} {_HELP[name]}", f"# TYPE {name} gauge", *samples]
        return "\n".join(out) + "\n"


def escape(value) -> str:
    r"""A label value escaped for the exposition format (backslash, double quote, newline).

    Examples
    --------
    >>> print(escape('say "hi"\nback\\slash'))
    say \"hi\"\nback\\slash
    """
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value) -> str:
    """A sample value: integers exactly, floats in full precision, NaN and infinities spelled out."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def prometheus_text(result, now: float | None = None) -> str:
    """The metrics of a :class:`etl.RunResult` in the Prometheus text exposition format."""
    now = time.time() if now is None else now
    p = {"pipeline": result.pipeline}
    f = _Families()
    f.add("etl_run_info", {**p, "batch": result.batch, "run_id": result.run_id, "table": result.table}, 1)
    for status in STATUSES:
        f.add("etl_run_status", {**p, "status": status}, int(result.status == status))
    f.add("etl_run_exit_code", p, 0)
    f.add("etl_run_rows", {**p, "kind": "read"}, result.rows_read)
    for kind in ROW_COUNTS:
        f.add("etl_run_rows", {**p, "kind": "in" if kind == "rows_in" else kind}, getattr(result, kind))
    f.add("etl_run_files", {**p, "kind": "added"}, result.files_added)
    f.add("etl_run_files", {**p, "kind": "removed"}, result.files_removed)
    f.add("etl_run_duration_seconds", {**p, "stage": "total"}, float(result.wall_seconds))
    for key, value in (result.stages or {}).items():
        if key.endswith("_seconds") and isinstance(value, (int, float)):
            f.add("etl_run_duration_seconds", {**p, "stage": key[: -len("_seconds")]}, float(value))
    for kind in ("source_bytes_read", "table_bytes_read", "bytes_written"):
        f.add("etl_run_bytes", {**p, "kind": kind.replace("_bytes", "").replace("bytes_", "")},
              (result.stages or {}).get(kind))
    for stage, peak in ((result.stages or {}).get("peak_memory") or {}).items():
        f.add("etl_run_peak_memory_bytes", {**p, "stage": stage, "scope": "cluster"}, peak.get("cluster_bytes"))
        f.add("etl_run_peak_memory_bytes", {**p, "stage": stage, "scope": "worker"}, peak.get("worker_bytes"))
        f.add("etl_run_peak_memory_limit_ratio", {**p, "stage": stage}, peak.get("worker_limit_ratio"))
    f.add("etl_run_table_version", {**p, "table": result.table}, result.version)
    f.add("etl_run_commit_attempts", p, result.attempts)
    f.add("etl_run_timestamp_seconds", p, float(now))
    if result.status in SUCCESS:
        f.add("etl_run_last_success_timestamp_seconds", p, float(now))
    return f.text()


def failure_text(pipeline: str, exit_code: int, *, now: float | None = None, previous: str | None = None) -> str:
    """The metrics of a run that failed (no RunResult), keeping the last success time from ``previous``."""
    now = time.time() if now is None else now
    p = {"pipeline": pipeline}
    f = _Families()
    for status in STATUSES:
        f.add("etl_run_status", {**p, "status": status}, int(status == "failed"))
    f.add("etl_run_exit_code", p, int(exit_code))
    f.add("etl_run_timestamp_seconds", p, float(now))
    f.add("etl_run_last_success_timestamp_seconds", p, last_success(previous or "", pipeline))
    return f.text()


def last_success(text: str, pipeline: str) -> float | None:
    """``etl_run_last_success_timestamp_seconds`` of ``pipeline`` in an earlier metrics file, if any."""
    pattern = re.compile(r'^etl_run_last_success_timestamp_seconds\{pipeline="' + re.escape(escape(pipeline))
                         + r'"\} (\S+)$', re.MULTILINE)
    m = pattern.search(text)
    return float(m.group(1)) if m else None


def write_prometheus(result, path: str | os.PathLike, now: float | None = None) -> Path:
    """Write the metrics of ``result`` to ``path`` atomically (for node-exporter's textfile collector)."""
    return write_atomic(prometheus_text(result, now), path)


def write_failure(pipeline: str, exit_code: int, path: str | os.PathLike, now: float | None = None) -> Path:
    """Write the metrics of a failed run to ``path`` atomically, keeping the previous last-success time."""
    path = Path(path)
    previous = path.read_text() if path.exists() else None
    return write_atomic(failure_text(pipeline, exit_code, now=now, previous=previous), path)


def write_atomic(text: str, path: str | os.PathLike) -> Path:
    """Replace ``path`` with ``text`` in one rename: readers see the old file or the new one, never a part.

    The temporary file is in the same folder (a rename is atomic only within one
    filesystem) and is not named ``*.prom``, so the collector never picks it up.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the collector runs as another user
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _result_from_json(text: str):
    """A RunResult from ``etl run --json`` output (fields this version does not know are ignored)."""
    from dataclasses import fields

    from etl.run.result import RunResult

    data, known = json.loads(text), {f.name for f in fields(RunResult)}
    return RunResult(**{k: v for k, v in data.items() if k in known})


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.observe.metrics",
                                     description="Write run metrics in the Prometheus text format, atomically.")
    parser.add_argument("inputs", nargs="+", metavar="[RESULT.json] OUT.prom",
                        help="the JSON of 'etl run --json' ('-' for stdin) and the metrics file to write")
    parser.add_argument("--failed", metavar="PIPELINE", help="write the metrics of a failed run of PIPELINE")
    parser.add_argument("--exit-code", type=int, default=1, help="the failed run's exit code [default: 1]")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.failed:
        if len(args.inputs) != 1:
            parser.error("with --failed give only OUT.prom")
        write_failure(args.failed, args.exit_code, args.inputs[0])
        return 0
    if len(args.inputs) != 2:
        parser.error("give RESULT.json and OUT.prom")
    source, out = args.inputs
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    write_prometheus(_result_from_json(text), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
