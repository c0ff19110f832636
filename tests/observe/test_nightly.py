"""The nightly job: the GitHub Actions workflow's shape, and cluster/ci/nightly.sh run for real."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "cluster" / "ci"


def _steps():
    wf = yaml.safe_load((CI / "nightly.yml").read_text())
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as true
    (job,) = wf["jobs"].values()
    return wf, triggers, job, job["steps"]


def test_workflow_runs_yesterday_on_a_schedule_and_always_uploads_logs_and_metrics():
    wf, triggers, job, steps = _steps()
    assert re.fullmatch(r"[\d*/,-]+( [\d*/,-]+){4}", triggers["schedule"][0]["cron"])
    assert "workflow_dispatch" in triggers
    (run,) = [s for s in steps if "etl run" in s.get("run", "")]
    assert "--date yesterday" in run["run"] and '--warehouse "$ETL_WAREHOUSE"' in run["run"]
    assert "2> " in run["run"] and 'exit "$code"' in run["run"]  # logs to a file; the job fails with the run
    (upload,) = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()"
    assert {"etl.log", "etl.prom"} <= {Path(p).name for p in upload["with"]["path"].split()}
    assert steps.index(upload) > steps.index(run)


def test_workflow_takes_credentials_from_secrets_only():
    text = (CI / "nightly.yml").read_text()
    _, _, job, _ = _steps()
    for name, value in job["env"].items():
        if re.search(r"KEY|SECRET|TOKEN|PASSWORD", name):
            assert re.fullmatch(r"\$\{\{ secrets\.\w+ \}\}", value), name
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key\s*=|password\s*[:=]\s*\S", text, re.I)


def _etl_bin() -> str:
    """The etl script of this interpreter (not a version-manager shim that may pick another)."""
    beside = Path(sys.executable).parent / "etl"
    return str(beside) if beside.exists() else shutil.which("etl")


def _nightly(tmp_path: Path, client, warehouse: str, pipeline: str) -> tuple[subprocess.CompletedProcess, Path]:
    logs = tmp_path / f"logs-{pipeline}"
    env = {**os.environ, "ETL_PIPELINE": pipeline, "ETL_WAREHOUSE": warehouse, "ETL_DATE": "2026-01-01",
           "ETL_LOG_DIR": str(logs), "ETL_METRICS_FILE": str(tmp_path / "textfile" / f"{pipeline}.prom"),
           "ETL_RUN_ARGS": "--param demo_orders=300", "ETL_SCHEDULER": client.scheduler.address,
           "ETL_PIPELINES": str(REPO / "pipelines"), "PYTHON": sys.executable, "ETL_BIN": _etl_bin()}
    done = subprocess.run(["bash", str(CI / "nightly.sh")], env=env, capture_output=True, text=True, timeout=300)
    return done, logs


def _metrics(path: Path) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(path.read_text()) for s in f.samples}


def test_nightly_script_runs_and_writes_json_logs_result_and_metrics(tmp_path, client, warehouse):
    done, logs = _nightly(tmp_path, client, warehouse, "tpch_lineitem_daily")
    (log,) = logs.glob("tpch_lineitem_daily-*.log")
    assert done.returncode == 0, done.stderr + log.read_text()
    (result_file,) = logs.glob("tpch_lineitem_daily-*.json")
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert lines and all({"ts", "level", "msg"} <= set(line) for line in lines)
    result = json.loads(result_file.read_text())
    assert (result["status"], result["batch"]) == ("committed", "2026-01-01") and result["inserted"] > 0
    m = _metrics(tmp_path / "textfile" / "tpch_lineitem_daily.prom")
    p = ("pipeline", "tpch_lineitem_daily")
    assert m[("etl_run_status", (p, ("status", "committed")))] == 1
    assert m[("etl_run_rows", (("kind", "inserted"), p))] == result["inserted"]
    assert m[("etl_run_exit_code", (p,))] == 0


def test_nightly_script_propagates_a_failure_exit_code(tmp_path, client, warehouse):
    done, logs = _nightly(tmp_path, client, warehouse, "no_such_pipeline")
    assert done.returncode == 3
    assert "exit code 3" in done.stderr
    (log,) = logs.glob("no_such_pipeline-*.log")
    assert "no pipeline named 'no_such_pipeline'" in log.read_text()
    m = _metrics(tmp_path / "textfile" / "no_such_pipeline.prom")
    p = ("pipeline", "no_such_pipeline")
    assert m[("etl_run_exit_code", (p,))] == 3 and m[("etl_run_status", (p, ("status", "failed")))] == 1
