#!/usr/bin/env bash
# Nightly run of one pipeline, for cron or any scheduler: logs, result and metrics to dated files,
# and the run's exit code as this script's (0 ok, 3 config, 4 cluster, 5 source, 6 schema, 8 commit).
#
# Configuration comes from the environment, never from this file:
#   ETL_PIPELINE      pipeline name (required)
#   ETL_WAREHOUSE     warehouse URL (required), e.g. s3://bucket/warehouse
#   ETL_DATE          batch date: YYYY-MM-DD, today or yesterday [default: yesterday]
#   ETL_LOG_DIR       folder for the dated log and result files [default: ./logs]
#   ETL_METRICS_FILE  Prometheus metrics file, replaced atomically; point it into node-exporter's
#                     --collector.textfile.directory [default: $ETL_LOG_DIR/etl_$ETL_PIPELINE.prom]
#   ETL_RUN_ARGS      extra 'etl run' arguments, e.g. "--cluster prod" or "--param demo_orders=500"
#   ETL_ENV_FILE      optional file of VAR=value lines to load first (credentials: keep it mode 600)
#   ETL_BIN, PYTHON   the etl command and the Python that has etl installed [default: etl, python]
# Credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) are read from the environment by etl.
#
# Outputs, per run, in $ETL_LOG_DIR:  <pipeline>-<UTC stamp>.log   logs, one JSON object a line
#                                     <pipeline>-<UTC stamp>.json  the run result ('etl run --json')
set -uo pipefail

if [[ -n "${ETL_ENV_FILE:-}" ]]; then
    set -a
    # shellcheck disable=SC1090
    . "$ETL_ENV_FILE" || { echo "nightly: cannot read ETL_ENV_FILE=$ETL_ENV_FILE" >&2; exit 3; }
    set +a
fi
: "${ETL_PIPELINE:?nightly: set ETL_PIPELINE to the pipeline to run}"
: "${ETL_WAREHOUSE:?nightly: set ETL_WAREHOUSE to the warehouse URL}"
date_arg="${ETL_DATE:-yesterday}"
log_dir="${ETL_LOG_DIR:-logs}"
metrics="${ETL_METRICS_FILE:-$log_dir/etl_${ETL_PIPELINE}.prom}"
etl_bin="${ETL_BIN:-etl}"
python="${PYTHON:-python}"
read -r -a extra <<< "${ETL_RUN_ARGS:-}"

mkdir -p "$log_dir" || exit 1
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
log="$log_dir/${ETL_PIPELINE}-${stamp}.log"
result="$log_dir/${ETL_PIPELINE}-${stamp}.json"

"$etl_bin" run "$ETL_PIPELINE" --date "$date_arg" --warehouse "$ETL_WAREHOUSE" --json ${extra[@]+"${extra[@]}"} \
    >"$result" 2>"$log"
code=$?

if [[ $code -eq 0 ]]; then
    "$python" -m etl.observe.metrics "$result" "$metrics" 2>>"$log" \
        || echo "nightly: run succeeded but writing $metrics failed" >&2
else
    "$python" -m etl.observe.metrics --failed "$ETL_PIPELINE" --exit-code "$code" "$metrics" 2>>"$log" \
        || echo "nightly: writing $metrics failed" >&2
    echo "nightly: $ETL_PIPELINE --date $date_arg failed with exit code $code; see $log" >&2
    tail -n 5 "$log" >&2
fi
exit "$code"
