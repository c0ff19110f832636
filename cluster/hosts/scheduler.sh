#!/usr/bin/env bash
# Start the Dask scheduler of an etl cluster (one per cluster). Runs in the foreground:
# put it under systemd, supervisord or a container runtime.
#
# Environment [default]:
#   ETL_SCHEDULER_HOST      address to listen on and advertise [all interfaces]
#   ETL_SCHEDULER_PORT      comm port [8786]
#   ETL_DASHBOARD_ADDRESS   dashboard (plain HTTP) [:8787]
#   ETL_TLS                 1 = mutual TLS (tls://), 0 = plain TCP [1]
#   ETL_TLS_DIR             folder of ca.pem, scheduler.pem, scheduler-key.pem [~/.config/etl/tls]
#   ETL_TLS_CA_FILE, ETL_TLS_CERT, ETL_TLS_KEY   override single files
# Extra arguments go to `dask scheduler` unchanged (e.g. --idle-timeout 1h).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/_tls.sh"
tls_args scheduler

args=(--port "${ETL_SCHEDULER_PORT:-8786}" --dashboard-address "${ETL_DASHBOARD_ADDRESS:-:8787}")
[ -n "${ETL_SCHEDULER_HOST:-}" ] && args+=(--host "$ETL_SCHEDULER_HOST")
if [ ${#TLS_ARGS[@]} -gt 0 ]; then args+=(--protocol tls "${TLS_ARGS[@]}"); else args+=(--protocol tcp); fi
exec dask scheduler "${args[@]}" "$@"
