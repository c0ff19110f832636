"""Text tables of upsert results."""

from __future__ import annotations

ANCHOR = "deltalake"


def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _step(res: dict, step: str, key: str):
    return res.get("steps", {}).get(step, {}).get(key)


def _check(res: dict) -> str:
    steps = res.get("steps", {})
    if not steps:
        return "-"
    fails = [s for s, r in steps.items() if not r["verify"]["pass"]]
    return "PASS" if not fails else "FAIL(" + ",".join(fails) + ")"


def _busy(steps: dict) -> str:
    """Largest share of the cores busy with other work during a step (contention flag)."""
    vals = [r.get("other_cpu_pct") for r in steps.values() if r.get("other_cpu_pct") is not None]
    return f"{max(vals):.0f}" if vals else "-"


def shape_table(shape: str, meta: dict, results: dict, manifest: dict) -> str:
    months = f"{meta['months_touched']} months" + (f" {meta['months'][0]}..{meta['months'][-1]}" if meta["months"] else "")
    lines = [
        "",
        f"== shape {shape}: {meta['updates']:,} updates + {meta['inserts']:,} inserts over {months}; "
        f"table {manifest['rows']:,} rows",
        f"{'engine':<18} {'load s':>7} {'merge s':>8} {'rerun s':>8} {'load MB':>8} {'merge MB':>9} "
        f"{'rerun MB':>9} {'abs MB':>7} {'merge files +/-':>16} {'rerun files +/-':>16} {'busy%':>5}  check",
    ]
    for eng, res in results.items():
        if res["status"] == "unavailable":
            lines.append(f"{eng:<18} not available")
            continue
        if res["status"] != "ok" and not res.get("steps"):
            lines.append(f"{eng:<18} ERROR {res.get('error', '')[:100]}")
            continue
        steps = res.get("steps", {})
        absmb = max((r.get("peak_rss_mb", 0) for r in steps.values()), default=None)

        def files(s):
            r = steps.get(s)
            return "-" if not r else f"+{r['files_added']}/-{r['files_removed']}"

        lines.append(
            f"{eng:<18} {_f(_step(res, 'load', 'wall_s'), '7.2f')} {_f(_step(res, 'merge', 'wall_s'), '8.2f')} "
            f"{_f(_step(res, 'rerun', 'wall_s'), '8.2f')} {_f(_step(res, 'load', 'peak_above_baseline_mb'), '8.0f')} "
            f"{_f(_step(res, 'merge', 'peak_above_baseline_mb'), '9.0f')} "
            f"{_f(_step(res, 'rerun', 'peak_above_baseline_mb'), '9.0f')} {_f(absmb, '7.0f')} "
            f"{files('merge'):>16} {files('rerun'):>16} {_busy(steps) + ('' if res.get('all_clean', True) else '!'):>5}"
            f"  {_check(res)}"
            + ("" if res["status"] == "ok" else f"  ERROR {res.get('error', '')[:80]}")
        )
        for extra, r in steps.items():
            if extra in ("load", "merge", "rerun"):
                continue
            lines.append(
                f"{'  ' + eng + ' ' + extra:<18} {'':>7} {r['wall_s']:8.2f} {'':>8} {'':>8} "
                f"{r.get('peak_above_baseline_mb', 0):9.0f} {'':>9} {r.get('peak_rss_mb', 0):7.0f} "
                f"{'+%d/-%d' % (r['files_added'], r['files_removed']):>16} {'':>16}  "
                f"{'PASS' if r['verify']['pass'] else 'FAIL'}"
            )
    anchor = results.get(ANCHOR)
    if anchor and anchor.get("status") == "ok":
        lines.append(f"-- ratios vs {ANCHOR} native (time x, peak-memory x; >1 = worse than {ANCHOR})")
        lines.append(f"{'engine':<18} {'load t':>7} {'merge t':>8} {'rerun t':>8} {'load mem':>8} {'merge mem':>9} {'rerun mem':>9}")
        for eng, res in results.items():
            if eng == ANCHOR or res.get("status") != "ok":
                continue
            row = f"{eng:<18}"
            for step, key, w in [("load", "wall_s", 7), ("merge", "wall_s", 8), ("rerun", "wall_s", 8),
                                 ("load", "peak_above_baseline_mb", 8), ("merge", "peak_above_baseline_mb", 9),
                                 ("rerun", "peak_above_baseline_mb", 9)]:
                x, y = _step(res, step, key), _step(anchor, step, key)
                row += " " + (f"{x / y:{w}.2f}" if x is not None and y else f"{'-':>{w}}")
            lines.append(row)
    return "\n".join(lines)


def summary(doc: dict) -> str:
    m = doc["machine"]
    fails = [
        f"{shape}/{eng}"
        for shape, rs in doc["results"].items()
        for eng, r in rs.items()
        if r.get("status") == "ok" and _check(r) != "PASS" or r.get("status") == "error"
    ]
    lines = [
        "",
        f"machine: {m['cpus_logical']} logical CPUs ({m['cpu_model']}), {m['memory_gib']} GiB; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
        "MB = peak RSS of the engine's process tree above its RSS right before the step; "
        "abs MB = absolute peak over all steps. busy% = largest share of the machine's cores busy "
        "outside the measured process tree during a step (other processes, kernel writeback): "
        "a run above --quiet-pct counts as disturbed and is retried; '!' = a step had no undisturbed sample (its time is disturbed).",
        "correctness: " + ("all PASS" if not fails else "FAIL/ERROR: " + ", ".join(fails)),
    ]
    return "\n".join(lines)


def markdown(doc: dict) -> str:
    """Markdown tables of a results document (``python benchmarks/upsert.py --markdown FILE``)."""
    out = []
    for shape, results in doc["results"].items():
        meta = doc["batches"][shape]
        months = f"{meta['months_touched']} ship months" + (
            f" ({meta['months'][0]} .. {meta['months'][-1]})" if meta["months"] else "")
        out += [
            f"**{shape}**: {meta['updates']:,} updates + {meta['inserts']:,} inserts over {months}, "
            f"into {doc['input']['rows']:,} rows.",
            "",
            "| engine | load s | merge s | rerun s | merge CPU s | load peak MB | merge peak MB | rerun peak MB | abs peak MB "
            "| merge files +/- (MB written) | rerun files +/- | runs | busy % | check |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|",
        ]
        for eng, res in results.items():
            if res.get("status") == "unavailable":
                out.append(f"| {eng} | not available |" + " |" * 12)
                continue
            if res.get("status") != "ok":
                out.append(f"| {eng} | ERROR: {res.get('error', '')[:80]} |" + " |" * 12)
                continue
            st = res["steps"]
            absmb = max(r.get("peak_rss_mb", 0) for r in st.values())

            def g(s, k, fmt):
                v = st.get(s, {}).get(k)
                return "-" if v is None else format(v, fmt)

            m, r = st.get("merge", {}), st.get("rerun", {})
            busy = max((x.get("other_cpu_pct", 0) for x in st.values()), default=0)
            out.append(
                f"| {eng} | {g('load', 'wall_s', '.1f')} | {g('merge', 'wall_s', '.1f')} | {g('rerun', 'wall_s', '.1f')} "
                f"| {g('merge', 'tree_cpu_s', '.1f')} "
                f"| {g('load', 'peak_above_baseline_mb', ',.0f')} | {g('merge', 'peak_above_baseline_mb', ',.0f')} "
                f"| {g('rerun', 'peak_above_baseline_mb', ',.0f')} | {absmb:,.0f} "
                f"| +{m.get('files_added')}/-{m.get('files_removed')} ({m.get('mb_added')}) "
                f"| +{r.get('files_added')}/-{r.get('files_removed')} | {res.get('attempts', 1)} "
                f"| {busy:.0f}{'' if res.get('all_clean', True) else ' !'} | {_check(res)} |"
            )
            for extra, x in st.items():
                if extra in ("load", "merge", "rerun"):
                    continue
                out.append(
                    f"| {eng} `{extra}` | | {x['wall_s']:.1f} | | {x.get('tree_cpu_s', 0):.1f} | "
                    f"| {x.get('peak_above_baseline_mb', 0):,.0f} | | {x.get('peak_rss_mb', 0):,.0f} "
                    f"| +{x.get('files_added')}/-{x.get('files_removed')} ({x.get('mb_added')}) | | "
                    f"| {x.get('other_cpu_pct', 0):.0f} | {'PASS' if x['verify']['pass'] else 'FAIL'} |"
                )
        anchor = results.get(ANCHOR)
        if anchor and anchor.get("status") == "ok":
            out += ["", f"Ratios vs {ANCHOR} native (>1 = slower / more memory):", "",
                    "| engine | load t | merge t | rerun t | load mem | merge mem | rerun mem |",
                    "|---|---:|---:|---:|---:|---:|---:|"]
            for eng, res in results.items():
                if eng == ANCHOR or res.get("status") != "ok":
                    continue
                cells = []
                for step, key in [("load", "wall_s"), ("merge", "wall_s"), ("rerun", "wall_s"),
                                  ("load", "peak_above_baseline_mb"), ("merge", "peak_above_baseline_mb"),
                                  ("rerun", "peak_above_baseline_mb")]:
                    x, y = _step(res, step, key), _step(anchor, step, key)
                    cells.append(f"{x / y:.2f}" if x is not None and y else "-")
                out.append(f"| {eng} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
