"""Peak worker memory per stage: the time-aligned peaks, real samples from real workers, a real run."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
from hypothesis import given, settings, strategies as st
from prometheus_client.parser import text_string_to_metric_families

import etl
from etl.observe.memory import STAGES, StageMemory, peak_of
from etl.observe.metrics import prometheus_text
from tests.core.helpers import make_pipeline, random_batch, write_batch

MiB = 2**20


# --- the peaks, from what the workers answer (no cluster) ----------------------------------------------------

WORKER = st.fixed_dictionaries({  # figures as a worker reports them: start, samples in time order, end
    "start": st.tuples(st.integers(0, 5).map(float), st.integers(1, 1000)),
    "samples": st.lists(st.tuples(st.integers(5, 20).map(float), st.integers(1, 1000)), max_size=6).map(sorted),
    "end": st.tuples(st.integers(20, 25).map(float), st.integers(1, 1000)),
    "limit": st.one_of(st.none(), st.integers(1000, 4000)),
})


def _answers(workers: dict) -> tuple[dict, dict]:
    starts = {a: {"count": 0, "time": w["start"][0], "rss": w["start"][1]} for a, w in workers.items()}
    ends = {a: {"samples": w["samples"], "time": w["end"][0], "rss": w["end"][1], "limit": w["limit"]}
            for a, w in workers.items()}
    return starts, ends


def _sum_at(t: float, workers: dict) -> int:
    """Brute force: every worker at its highest figure taken at ``t``, else its latest before (0 before any)."""
    total = 0
    for w in workers.values():
        points = [w["start"], *w["samples"], w["end"]]
        now, before = [b for s, b in points if s == t], [b for s, b in points if s < t]
        total += max(now) if now else before[-1] if before else 0
    return total


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["tcp://a:1", "tcp://b:2", "tcp://c:3"]), WORKER, min_size=1))
def test_cluster_peak_is_the_highest_time_aligned_total_and_worker_peak_the_highest_single(workers):
    peak = peak_of(*_answers(workers))
    times = {t for w in workers.values() for t, _ in [w["start"], *w["samples"], w["end"]]}
    assert peak.cluster_bytes == max(_sum_at(t, workers) for t in times)
    per_worker = {a: max(b for _, b in [w["start"], *w["samples"], w["end"]]) for a, w in workers.items()}
    assert peak.worker_bytes == max(per_worker.values()) == per_worker[peak.worker]
    assert peak.worker_bytes <= peak.cluster_bytes <= sum(per_worker.values())
    ratios = [per_worker[a] / w["limit"] for a, w in workers.items() if w["limit"]]
    assert peak.worker_limit_ratio == (round(max(ratios), 4) if ratios else None)
    assert peak.workers == len(workers)


def test_workers_changing_at_the_same_instant_are_summed_once_changed():
    starts = {"a": {"count": 0, "time": 0.0, "rss": 400}, "b": {"count": 0, "time": 0.0, "rss": 100}}
    ends = {"a": {"samples": [(1.0, 100)], "time": 2.0, "rss": 100, "limit": None},
            "b": {"samples": [(1.0, 400)], "time": 2.0, "rss": 100, "limit": None}}
    assert peak_of(starts, ends).cluster_bytes == 500  # never a+b = 800 halfway through t=1
    assert peak_of({}, {}) is None


# --- real workers ---------------------------------------------------------------------------------------------

def _hold(nbytes: int) -> int:
    """On a worker: hold ``nbytes`` of touched memory until its monitor sampled twice, then free it."""
    from distributed import get_worker

    monitor = get_worker().monitor
    block = np.ones(nbytes // 8)
    seen = monitor.count
    while monitor.count < seen + 2:  # waits for an event (two samples taken), not for a guessed duration
        time.sleep(0.01)
    return int(block.nbytes)


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def test_a_peak_between_the_stage_ends_is_caught_from_the_workers_own_samples(client):
    worker = sorted(client.scheduler_info()["workers"])[0]
    memory = StageMemory(client)
    before = client.run(_rss)
    with memory.stage("stage"):
        held = client.submit(_hold, 256 * MiB, workers=[worker], pure=False).result()
    after = client.run(_rss)
    peak = memory.peaks["stage"]
    assert held == 256 * MiB
    assert max(after[worker], before[worker]) < before[worker] + held / 2  # freed again before the stage ended
    assert peak.worker == worker and peak.worker_bytes >= before[worker] + 0.9 * held
    assert peak.cluster_bytes >= sum(before.values()) + 0.9 * held - 64 * MiB
    assert peak.workers == len(before)
    limits = {a: w["memory_limit"] for a, w in client.scheduler_info()["workers"].items()}
    assert peak.worker_limit_ratio == round(peak.worker_bytes / limits[worker], 4)


def test_without_a_distributed_client_sampling_is_a_no_op():
    code = ("import dask, dask.array as da\n"
            "from etl.observe.memory import StageMemory\n"
            "m = StageMemory()\n"
            "with m.stage('read_transform'):\n"
            "    assert int(da.ones(10, chunks=5).sum().compute(scheduler='sync')) == 10\n"
            "assert m.client is None and m.to_dict() == {}, m.to_dict()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# --- a real run -----------------------------------------------------------------------------------------------

def test_a_run_reports_peak_worker_memory_per_stage_in_its_result_summary_and_metrics(client, warehouse):
    write_batch(warehouse, "2026-01-02", random_batch(np.random.default_rng(7), 5_000))
    info = client.scheduler_info()["workers"]
    limits = sum(w["memory_limit"] for w in info.values())
    before = client.run(_rss)
    result = etl.run(make_pipeline("t_memory"), date="2026-01-02", warehouse=warehouse, client=client)
    assert result.status == "committed" and result.inserted > 0
    peaks = result.stages["peak_memory"]
    assert list(peaks) == list(STAGES)
    for stage, peak in peaks.items():
        assert peak["workers"] == len(info) and peak["worker"] in info, stage
        assert 0.9 * max(before.values()) <= peak["worker_bytes"] <= peak["cluster_bytes"], stage
        assert 0.9 * sum(before.values()) <= peak["cluster_bytes"] <= limits, stage
        assert peak["cluster_bytes"] <= len(info) * peak["worker_bytes"], stage
        assert 0 < peak["worker_limit_ratio"] < 1, stage

    summary = str(result).splitlines()
    at = next(i for i, line in enumerate(summary) if line.startswith("peak memory"))
    assert "read+transform" in summary[at] and "stage" in summary[at + 1] and "commit" in summary[at + 2]
    assert f"over {len(info)} workers; worst worker" in summary[at + 2]

    parsed = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(prometheus_text(result)) for s in family.samples}
    for stage, peak in peaks.items():
        labels = (("pipeline", "t_memory"), ("scope", "cluster"), ("stage", stage))
        assert parsed[("etl_run_peak_memory_bytes", labels)] == peak["cluster_bytes"]
        labels = (("pipeline", "t_memory"), ("scope", "worker"), ("stage", stage))
        assert parsed[("etl_run_peak_memory_bytes", labels)] == peak["worker_bytes"]
        labels = (("pipeline", "t_memory"), ("stage", stage))
        assert parsed[("etl_run_peak_memory_limit_ratio", labels)] == peak["worker_limit_ratio"]
