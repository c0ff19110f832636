"""Daily-upsert benchmark: initial load, MERGE of a batch, and the same MERGE again, on TPC-H lineitem.

    python benchmarks/upsert.py --sf 1
    python benchmarks/upsert.py --sf 1 --engines deltalake,polars,pandas --shapes spread,recent \\
        --out benchmarks/results/upsert-sf1.json

Engines (``--engines``): etl (ours; an adapter, see benchmarks/_bench/engines.py), deltalake
(native delta-rs MERGE, the anchor), polars (write_delta mode="merge"), pandas (whole-table
rewrite); optional variants deltalake-changed (IS DISTINCT FROM update predicate) and
deltalake-pruned (ship months spelled out in the predicate).

Batch shapes (``--shapes``): spread (1% updates + 0.5% inserts uniformly over all ship months)
and recent (the same amounts in the 3 most recent ship months).

Each step of each (shape, engine) runs in a fresh child process; this process samples the RSS of
that child and all its descendants (e.g. dask workers) every 50 ms. Reported per step: wall time, peak RSS
above the tree's RSS right before the step, and absolute peak. Each table is verified after
every step (PASS/FAIL). See benchmarks/UPSERT.md for results.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bench import data as bdata  # noqa: E402
from _bench import engines as bengines  # noqa: E402
from _bench import report  # noqa: E402

DEFAULT_DATA = HERE / "data"


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return repr(x)


# --------------------------------------------------------------------------- child


def _ctx(a: argparse.Namespace, workdir: Path) -> bengines.Ctx:
    data_root = Path(a.data)
    meta = bdata.prepare_batch(data_root, a.sf, a.shape, a.seed)
    return bengines.Ctx(
        input_dir=str((bdata.sf_dir(data_root, a.sf) / "input").resolve()),
        input_files=bdata.input_files(data_root, a.sf),
        batch_dir=str(bdata.batch_dir(data_root, a.sf, a.shape, a.seed)),
        batch_files=bdata.batch_files(data_root, a.sf, a.shape, a.seed),
        table=str((workdir / "lineitem").resolve()),
        workdir=str(workdir.resolve()),
        months=meta["months"],
    )


def child_main(a: argparse.Namespace) -> int:
    """Run ONE step of one engine on one shape in this fresh process; write its record to ``a.result``.

    A fresh process per step keeps the steps apart: memory an allocator retained after the
    load (pyarrow's pool, jemalloc, glibc arenas) cannot hide the merge's own peak.
    """
    out: dict = {"engine": a.engine, "shape": a.shape, "step": a.step, "pid": os.getpid()}

    def dump(status: str, **kw) -> int:
        out.update(status=status, **kw)
        Path(a.result).write_text(json.dumps(_jsonable(out), indent=1))
        return 0

    ctx = _ctx(a, Path(a.workdir))
    ctx.extra["step"] = a.step
    eng = bengines.make(a.engine)
    fn = {"load": eng.load, "merge": eng.merge, "rerun": eng.merge, **dict(eng.extra_steps)}[a.step]
    try:
        for m in eng.imports:
            importlib.import_module(m)
        eng.setup(ctx)
    except bengines.EngineUnavailable as e:
        return dump("unavailable", reason=str(e))
    except Exception as e:  # noqa: BLE001
        return dump("error", error=f"setup: {type(e).__name__}: {e}", traceback=traceback.format_exc())
    try:
        gc.collect()
        time.sleep(0.3)  # let the sampler see the tree at rest: that is the step's baseline
        t0 = time.monotonic()
        ret = fn(ctx)
        t1 = time.monotonic()
        if a.step == "load":
            eng.after_load(ctx)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        if a.engine == "etl" and isinstance(e, (ImportError, AttributeError)):
            return dump("unavailable", reason=f"{type(e).__name__}: {e}")
        return dump("error", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    finally:
        eng.teardown()
    return dump(
        "ok",
        t0=t0,
        t1=t1,
        wall_s=round(t1 - t0, 3),
        table=ret if isinstance(ret, str) else ctx.table,
        merge_metrics=ctx.extra.get("merge_metrics"),
        run_results=ctx.extra.get("run_results"),
    )


# --------------------------------------------------------------------------- parent


def _kill_tree(pid: int) -> None:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def _evict(folder: Path) -> int:
    """Drop the (already written back) pages of every file under ``folder`` from the page cache.

    ``posix_fadvise(DONTNEED)`` needs no privilege: the step that follows reads the tables from
    disk, as a nightly run finds them. Returns the bytes of the files evicted.
    """
    total = 0
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                total += os.fstat(fd).st_size
            finally:
                os.close(fd)
    return total


def _over_budget(a: argparse.Namespace) -> bool:
    """Past --max-minutes: no more waiting for a quiet machine, no more retries."""
    return bool(a.max_minutes) and time.monotonic() - a.t_start > 60 * a.max_minutes


def _run_step(a: argparse.Namespace, engine: str, shape: str, step: str, workdir: Path) -> dict:
    from _bench.rss import TreeSampler, wait_quiet

    # Flush what the previous step wrote (a load leaves ~2 GB of dirty pages at SF10): its
    # writeback would otherwise land in this step's time, and a different amount for each engine.
    t = time.monotonic()
    os.sync()
    synced = {"pre_sync_s": round(time.monotonic() - t, 2)}
    if a.cold and step != "load":
        synced["evicted_mb"] = round(_evict(workdir) / 2**20, 1)
    wait = a.quiet_wait if not _over_budget(a) else 0
    quiet = wait_quiet(a.quiet_pct, wait, log=lambda m: print(m, flush=True)) if wait > 0 else {}

    result = workdir.parent / f"{engine}-{shape}-{step}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--engine", engine, "--shape", shape,
           "--step", step, "--sf", f"{a.sf:g}", "--seed", str(a.seed), "--data", str(a.data),
           "--workdir", str(workdir), "--result", str(result)]
    proc = subprocess.Popen(cmd)
    sampler = TreeSampler(proc.pid, interval=a.interval).start()
    try:
        rc = proc.wait(timeout=a.timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        proc.wait()
        rc = "timeout"
    finally:
        sampler.stop()
    if not result.exists():
        return {"status": "error", "error": f"{step}: child exited {rc} without a result"}
    rec = json.loads(result.read_text())
    result.unlink()
    if rec["status"] == "ok":
        w = sampler.window(rec.pop("t0"), rec.pop("t1"))
        rec["rss_baseline_mb"] = round(w["baseline"] / 2**20, 1)
        rec["peak_rss_mb"] = round(w["peak"] / 2**20, 1)
        rec["peak_above_baseline_mb"] = round((w["peak"] - w["baseline"]) / 2**20, 1)
        rec["rss_samples"] = w["samples"]
        rec.update(quiet, **synced)
        if "other_cpu_s" in w:
            rec["tree_cpu_s"] = w["tree_cpu_s"]
            rec["other_cpu_s"] = w["other_cpu_s"]
            # share of the machine's cores busy with something else during the step
            rec["other_cpu_pct"] = round(100 * w["other_cpu_s"] / (max(rec["wall_s"], 1e-3) * (os.cpu_count() or 1)), 1)
            rec["io_stall_s"] = w["io_stall_s"]
    return rec


def run_one(a: argparse.Namespace, engine: str, shape: str, manifest: dict, meta: dict) -> dict:
    """load, merge, rerun (+ the engine's extra steps), each in a fresh child; verify after each."""
    from _bench.verify import file_delta, file_stats, verify

    workdir = Path(a.workdir) / f"{engine}-{shape}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    steps: dict[str, dict] = {}
    out: dict = {"engine": engine, "shape": shape, "status": "ok", "steps": steps,
                 "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    extra = [n for n, _ in bengines.make(engine).extra_steps]
    prev = load_stats = None
    try:
        for step in ["load", "merge", "rerun", *extra]:
            print(f"[{engine}/{shape}] {step} ...", flush=True)
            rec = _run_step(a, engine, shape, step, workdir)
            if rec["status"] != "ok":
                out.update({k: v for k, v in rec.items() if k in ("status", "reason", "error", "traceback")})
                out["failed_step"] = step
                break
            table = rec.pop("table")
            stats = file_stats(table)
            rec.update(file_delta(load_stats if step in extra else prev, stats))
            if step == "load":
                load_stats = stats
            if step not in extra:
                prev = stats
            rec["verify"] = verify(table, manifest, None if step == "load" else meta, str(
                bdata.batch_dir(Path(a.data), a.sf, shape, a.seed)))
            steps[step] = rec
            v = rec["verify"]
            print(
                f"[{engine}/{shape}] {step}: {rec['wall_s']:.2f} s (other load {rec.get('other_cpu_pct', 0):.0f}%, "
                f"CPU {rec.get('tree_cpu_s', 0):.1f} s, I/O stall {rec.get('io_stall_s', 0):.1f} s), "
                f"peak +{rec['peak_above_baseline_mb']:.0f} MB "
                f"(abs {rec['peak_rss_mb']:.0f} MB), files +{rec['files_added']}/-{rec['files_removed']} "
                f"(active {rec['files_active']}), {'PASS' if v['pass'] else 'FAIL ' + '; '.join(v['notes'])}",
                flush=True,
            )
    finally:
        if not a.keep_tables:
            shutil.rmtree(workdir, ignore_errors=True)
    return out


STEP_NUMBERS = ("wall_s", "peak_above_baseline_mb", "peak_rss_mb", "rss_baseline_mb", "other_cpu_pct",
                "tree_cpu_s", "other_cpu_s", "io_stall_s")


def run_repeated(a: argparse.Namespace, engine: str, shape: str, manifest: dict, meta: dict) -> dict:
    """Full runs (fresh table each) until every step has ``a.repeat`` undisturbed samples.

    Each step runs in its own process and starts from the same table state whatever happened
    to the others, so steps are sampled independently: a step is *undisturbed* when other
    processes kept at most ``a.quiet_pct`` % of the cores busy while it ran (steps under 1 s
    always count as undisturbed: their busy share is sampling noise). Times (wall, CPU)
    are the median of a step's undisturbed samples (of all samples, flagged, if it has none);
    memory, which contention does not change, is the median of all samples. At most
    ``3 * a.repeat`` runs, fewer once past --max-minutes.
    """
    import statistics

    def clean(rec: dict) -> bool:
        # Under a second the busy share is mostly sampling-edge noise, and the step is cheap anyway.
        return rec["wall_s"] < 1.0 or rec.get("other_cpu_pct", 0) <= a.quiet_pct

    runs: list[dict] = []
    while True:
        r = run_one(a, engine, shape, manifest, meta)
        if r["status"] != "ok":
            return r
        runs.append(r)
        need = {s: a.repeat - sum(clean(x["steps"][s]) for x in runs) for s in r["steps"]}
        missing = {s: n for s, n in need.items() if n > 0}
        if not missing:
            break
        if len(runs) >= 3 * a.repeat or (len(runs) >= a.repeat and (a.quiet_wait <= 0 or _over_budget(a))):
            break
        print(f"[{engine}/{shape}] run {len(runs)}: still short of undisturbed samples for "
              + ", ".join(f"{s} ({n})" for s, n in missing.items()), flush=True)
    info = {"repeat": a.repeat, "attempts": len(runs)}
    if len(runs) == 1:
        r = runs[0]
        return {**r, **info, "all_clean": all(clean(x) for x in r["steps"].values())}
    out = {**runs[0], "steps": {}, **info}
    all_clean = True
    for step, rec in runs[0]["steps"].items():
        samples = [x["steps"][step] for x in runs]
        good = [x for x in samples if clean(x)]
        all_clean &= bool(good)
        merged = dict(rec)
        for k in STEP_NUMBERS:
            pool = (good or samples) if k in ("wall_s", "tree_cpu_s", "other_cpu_s", "other_cpu_pct", "io_stall_s") else samples
            vals = [x[k] for x in pool if k in x]
            if vals:
                merged[k] = round(statistics.median(vals), 3)
            merged[k + "_runs"] = [x.get(k) for x in samples]
        merged["undisturbed_samples"] = len(good)
        merged["verify"] = {"pass": all(x["verify"]["pass"] for x in samples),
                            "runs": [x["verify"] for x in samples]}
        out["steps"][step] = merged
    out["all_clean"] = all_clean
    return out


def machine_facts() -> dict:
    import psutil

    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for m in ("deltalake", "polars", "pandas", "pyarrow", "dask", "distributed", "psutil"):
        try:
            versions[m] = importlib.import_module(m).__version__
        except Exception:  # noqa: BLE001
            versions[m] = None
    try:
        versions["tpchgen-cli"] = subprocess.run(["tpchgen-cli", "--version"], capture_output=True,
                                                 text=True).stdout.strip()
    except OSError:
        versions["tpchgen-cli"] = None
    return {
        "cpus_logical": os.cpu_count(),
        "cpus_physical": psutil.cpu_count(logical=False),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (default 1: 6.0M rows)")
    p.add_argument("--engines", default=",".join(bengines.DEFAULT_ENGINES),
                   help=f"comma list from {', '.join(bengines.ENGINES)} (default %(default)s)")
    p.add_argument("--shapes", default="spread,recent", help="comma list of spread,recent")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", help="results JSON (default benchmarks/results/upsert-sf<SF>.json)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="data cache (default benchmarks/data)")
    p.add_argument("--workdir", help="where tables are written (default <data>/work)")
    p.add_argument("--interval", type=float, default=0.05, help="RSS sampling interval, s")
    p.add_argument("--timeout", type=float, default=1800, help="per engine and shape, s")
    p.add_argument("--repeat", type=int, default=1,
                   help="undisturbed samples wanted per step; each step reports the median (default 1)")
    p.add_argument("--quiet-pct", type=float, default=15.0,
                   help="before each step, wait until other processes use less than this %% of the cores; "
                        "a step above it during its run is disturbed and sampled again (default %(default)s)")
    p.add_argument("--quiet-wait", type=float, default=180.0,
                   help="longest wait for a quiet machine before a step, s; 0 = never wait or retry "
                        "(default %(default)s)")
    p.add_argument("--max-minutes", type=float, default=0,
                   help="time budget: past it, no more waiting for quiet or retrying (default: none)")
    p.add_argument("--markdown", metavar="RESULTS_JSON",
                   help="print the markdown tables of a results file and exit (runs nothing)")
    p.add_argument("--update", action="store_true",
                   help="keep the other results already in --out; replace only the engines and shapes run now")
    p.add_argument("--keep-tables", action="store_true", help="keep the written Delta tables")
    p.add_argument("--cold", action="store_true",
                   help="before each step after the load, evict the tables' files from the page cache "
                        "(posix_fadvise DONTNEED), so every merge reads its table from disk")
    # internal: one engine on one shape, in a child process
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--engine", help=argparse.SUPPRESS)
    p.add_argument("--shape", help=argparse.SUPPRESS)
    p.add_argument("--step", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.t_start = time.monotonic()
    a.data = str(Path(a.data).resolve())
    a.workdir = str(Path(a.workdir or Path(a.data) / "work").resolve())
    if a.child:
        return child_main(a)
    if a.markdown:
        print(report.markdown(json.loads(Path(a.markdown).read_text())))
        return 0

    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    shapes = [s.strip() for s in a.shapes.split(",") if s.strip()]
    for e in engines:
        bengines.make(e)  # validates the name
    out = Path(a.out) if a.out else HERE / "results" / f"upsert-sf{a.sf:g}.json"

    t = time.monotonic()
    manifest = bdata.prepare_input(Path(a.data), a.sf)
    metas = {s: bdata.prepare_batch(Path(a.data), a.sf, s, a.seed) for s in shapes}
    print(f"[data] ready in {time.monotonic() - t:.1f} s: {manifest['rows']:,} rows in "
          f"{len(manifest['files'])} files", flush=True)

    doc = {
        "benchmark": "upsert",
        "command": " ".join(["python", "benchmarks/upsert.py", *(argv if argv is not None else sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_facts(),
        "sf": a.sf,
        "seed": a.seed,
        "input": {k: v for k, v in manifest.items() if k != "months"},
        "batches": metas,
        "repeat": a.repeat,
        "cold": a.cold,
        "rss_sampling": {"interval_s": a.interval, "scope": "child benchmark process + all descendants"},
        "results": {},
    }
    if a.update and out.exists():
        old = json.loads(out.read_text())
        if old.get("sf") != a.sf or old.get("seed") != a.seed:
            raise SystemExit(f"--update: {out} holds sf={old.get('sf')} seed={old.get('seed')}, not sf={a.sf} seed={a.seed}")
        doc["results"] = old.get("results", {})
        doc["batches"] = {**old.get("batches", {}), **metas}
        doc["commands"] = old.get("commands", [old.get("command")]) + [doc["command"]]
    for shape in shapes:
        doc["results"].setdefault(shape, {})
        for engine in engines:
            res = run_repeated(a, engine, shape, manifest, metas[shape])
            doc["results"][shape][engine] = res
            if res["status"] == "unavailable":
                print(f"{engine}: not available ({res.get('reason', '')})", flush=True)
            elif res["status"] != "ok":
                print(f"{engine}: ERROR {res.get('error', '')}", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(_jsonable(doc), indent=1))
        print(report.shape_table(shape, doc["batches"][shape], doc["results"][shape], manifest), flush=True)
    print(report.summary(doc), flush=True)
    out.write_text(json.dumps(_jsonable(doc), indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
