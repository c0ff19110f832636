"""Peak memory of a process tree: RSS of a root process plus all its recursive children.

A :class:`TreeSampler` polls ``/proc`` through psutil every ``interval`` seconds in a
background thread and keeps a timeline of ``(monotonic time, tree RSS bytes)``. Peaks of
a step are then read from the timeline between the step's start and end times, which the
measured process reports with :func:`time.monotonic` (a system-wide clock on Linux, so it
can be compared across processes).

The harness samples the *child* benchmark process (one per engine and shape) from the
idle parent, so a child that holds the GIL for long stretches (pandas) cannot starve the
sampler, and each engine starts from a fresh interpreter. RSS is summed without
de-duplicating shared pages (as ``ps`` would), so forked/spawned workers that share
library pages are counted once each: an upper bound, and the convention used by most
"peak memory" figures.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left, bisect_right

import psutil


def tree_rss(root: psutil.Process) -> int:
    """RSS in bytes of ``root`` and every live descendant (0 if root is gone)."""
    return tree_usage(root)[0]


def tree_usage(root: psutil.Process) -> tuple[int, float]:
    """(RSS bytes, CPU seconds used so far) of ``root`` and every live descendant."""
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0.0
    rss, cpu = 0, 0.0
    for p in procs:
        try:
            with p.oneshot():
                rss += p.memory_info().rss
                t = p.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return rss, cpu


_SELF = psutil.Process()


def _busy_cpu_s() -> float:
    """CPU seconds the machine has spent busy (all cores, steal included), less this process's own.

    This process is the measuring parent; its sampler thread costs ~5% of a core and must
    not count as somebody else's load.
    """
    t = psutil.cpu_times()
    busy = sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    me = _SELF.cpu_times()
    return busy - me.user - me.system


def io_stall_s() -> float:
    """Seconds, since boot, during which every non-idle task of the machine was stalled on I/O
    (Linux pressure stall information, ``/proc/pressure/io`` "full"; 0.0 where the kernel has none)."""
    try:
        with open("/proc/pressure/io") as f:
            for line in f:
                if line.startswith("full"):
                    return int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def machine_busy_pct(seconds: float = 1.0) -> float:
    """Share (0-100) of all cores busy with other processes over the next ``seconds``."""
    b0, t0 = _busy_cpu_s(), time.monotonic()
    time.sleep(seconds)
    b1, t1 = _busy_cpu_s(), time.monotonic()
    return 100.0 * max(0.0, b1 - b0) / ((t1 - t0) * (psutil.cpu_count() or 1))


def wait_quiet(threshold_pct: float, max_wait_s: float, log=print) -> dict:
    """Wait until other processes use under ``threshold_pct`` of the cores (2 s windows), at most
    ``max_wait_s``. Returns how long it waited and the last load seen."""
    t0 = time.monotonic()
    pct = machine_busy_pct(1.0)
    warned = False
    while pct >= threshold_pct and time.monotonic() - t0 < max_wait_s:
        if not warned:
            log(f"[quiet] machine {pct:.0f}% busy with other work; waiting up to {max_wait_s:.0f} s")
            warned = True
        pct = machine_busy_pct(2.0)
    return {"waited_s": round(time.monotonic() - t0, 1), "busy_pct_before": round(pct, 1)}


class TreeSampler:
    def __init__(self, pid: int, interval: float = 0.05):
        self.root = psutil.Process(pid)
        self.interval = interval
        self.times: list[float] = []
        self.rss: list[int] = []
        self.tree_cpu: list[float] = []  # CPU seconds of the tree
        self.busy_cpu: list[float] = []  # CPU seconds of the whole machine
        self.io_stall: list[float] = []  # seconds the whole machine was stalled on I/O (PSI "full")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            r, c = tree_usage(self.root)
            b = _busy_cpu_s()
            self.io_stall.append(io_stall_s())
            self.times.append(t)
            self.rss.append(r)
            self.tree_cpu.append(c)
            self.busy_cpu.append(b)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t)))

    def start(self) -> "TreeSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "TreeSampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def window(self, t0: float, t1: float) -> dict:
        """Peak and baseline of the step that ran between monotonic times ``t0`` and ``t1``.

        baseline = the last sample taken before the step started (the tree's RSS at rest),
        peak = the largest sample inside the step. Both in bytes; ``samples`` counts the
        samples inside the window (a step shorter than ``interval`` may have none).

        ``other_cpu_s``: CPU seconds the rest of the machine (not the measured tree) spent
        busy during the step -- other processes competing for the cores (the sampler's own
        share, ~1-2% of one core, included). ``tree_cpu_s``: the tree's own CPU seconds.
        ``io_stall_s``: seconds during which every running task waited on I/O (the disk, or
        page-cache writeback throttling writers); a step that is not CPU-bound shows it here.
        """
        n = min(len(self.times), len(self.rss), len(self.tree_cpu), len(self.busy_cpu), len(self.io_stall))
        times, rss = self.times[:n], self.rss[:n]
        i0 = bisect_left(times, t0)
        i1 = bisect_right(times, t1)
        inside = rss[i0:i1]
        base = rss[i0 - 1] if i0 > 0 else (inside[0] if inside else 0)
        peak = max(inside + [base])
        out = {"baseline": base, "peak": peak, "samples": len(inside)}
        # CPU between the last sample before the step and the first sample after it.
        j0, j1 = max(i0 - 1, 0), min(i1, n - 1)
        if n and j1 > j0:
            tree = self.tree_cpu[j1] - self.tree_cpu[j0]
            busy = self.busy_cpu[j1] - self.busy_cpu[j0]
            out["tree_cpu_s"] = round(tree, 2)
            out["other_cpu_s"] = round(max(0.0, busy - tree), 2)
            out["io_stall_s"] = round(self.io_stall[j1] - self.io_stall[j0], 2)
        return out
