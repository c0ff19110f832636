#!/usr/bin/env bash
# Start the Dask workers of one etl host (run it on every worker machine).
# Like the framework's local cluster: one process per core, one thread each, so pandas
# code never fights over the GIL, and a memory limit per process so a worker spills to
# disk, then pauses, then is restarted by its nanny before the machine runs out of memory.
#
# Environment [default]:
#   ETL_SCHEDULER         scheduler address, tls://host:8786 or tcp://host:8786 [required]
#   ETL_NWORKERS          worker processes on this host [number of cores]
#   ETL_NTHREADS          threads per process [1]
#   ETL_MEMORY_LIMIT      per process: bytes, '6GiB', or a fraction of the host's memory
#                         (cgroup-aware) [0.9 / ETL_NWORKERS]
#   ETL_WORKER_HOST       address to listen on and advertise to the scheduler [picked by Dask]
#   ETL_WORKER_NAME       name prefix of the processes [host:port]
#   ETL_LOCAL_DIRECTORY   where workers spill to disk [a temporary folder]
#   ETL_TLS, ETL_TLS_DIR  as for scheduler.sh; the files are ca.pem, worker.pem, worker-key.pem
#   ETL_TLS_CA_FILE, ETL_TLS_CERT, ETL_TLS_KEY   override single files
#   MIMALLOC_PURGE_DELAY  ms Arrow's allocator keeps freed memory [10000, as `import etl` sets;
#                         ETL_MALLOC_TUNING=0 leaves it unset]
# Extra arguments go to `dask worker` unchanged (e.g. --resources "GPU=1").
# Every worker host needs the same etl and dask versions as the machine running `etl run`;
# pipeline modules are not needed there, `etl run` uploads them.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/_tls.sh"
tls_args worker

if [ "${ETL_MALLOC_TUNING:-1}" != 0 ]; then
  export MIMALLOC_PURGE_DELAY=${MIMALLOC_PURGE_DELAY:-10000}  # read when pyarrow loads; see etl/run/allocator.py
fi

scheduler=${ETL_SCHEDULER:-}
if [ -z "$scheduler" ]; then
  echo "worker.sh: set ETL_SCHEDULER to the scheduler's address, e.g. tls://scheduler-host:8786" >&2
  exit 1
fi
want=$([ ${#TLS_ARGS[@]} -gt 0 ] && echo tls || echo tcp)
if [ "${scheduler%%://*}" != "$want" ]; then
  echo "worker.sh: ETL_SCHEDULER is $scheduler but TLS is $([ "$want" = tls ] && echo on || echo off);" \
       "use $want://${scheduler#*://} (or ETL_TLS=$([ "$want" = tls ] && echo 0 || echo 1))" >&2
  exit 1
fi
nworkers=${ETL_NWORKERS:-$(nproc)}
memory=${ETL_MEMORY_LIMIT:-$(awk -v n="$nworkers" 'BEGIN { printf "%.4f", 0.9 / n }')}

args=(--nworkers "$nworkers" --nthreads "${ETL_NTHREADS:-1}" --memory-limit "$memory")
[ -n "${ETL_WORKER_HOST:-}" ] && args+=(--host "$ETL_WORKER_HOST")
[ -n "${ETL_WORKER_NAME:-}" ] && args+=(--name "$ETL_WORKER_NAME")
[ -n "${ETL_LOCAL_DIRECTORY:-}" ] && args+=(--local-directory "$ETL_LOCAL_DIRECTORY")
exec dask worker "$scheduler" "${args[@]}" "${TLS_ARGS[@]}" "$@"
