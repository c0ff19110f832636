#!/usr/bin/env bash
# Make a private CA and TLS certificates for a test or dev Dask cluster (mutual TLS).
#
#   cluster/hosts/make-certs.sh [OUT_DIR] [HOST_OR_IP ...]
#
# OUT_DIR defaults to $ETL_TLS_DIR, else ~/.config/etl/tls. Writes, all PEM:
#   ca.pem                        the CA certificate: give it to every host and every client
#   ca-key.pem                    the CA key: keep it off the cluster hosts
#   scheduler.pem, scheduler-key.pem
#   worker.pem,    worker-key.pem
#   client.pem,    client-key.pem  for the machine that runs `etl run`
# An existing ca.pem + ca-key.pem in OUT_DIR is reused, so running the script again
# (e.g. with more host names) issues new certificates the running cluster still trusts.
# Each certificate names localhost, 127.0.0.1 and the HOST_OR_IP arguments; Dask checks
# the chain against ca.pem, not the host name, so any host holding a CA-signed key is in.
# ETL_CERT_DAYS sets the validity (default 365). Keys are EC P-256, files mode 0600.
set -euo pipefail

out=${1:-${ETL_TLS_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/etl/tls}}
[ $# -gt 0 ] && shift
days=${ETL_CERT_DAYS:-365}
command -v openssl >/dev/null || { echo "make-certs.sh: openssl is not installed" >&2; exit 1; }

mkdir -p "$out"
umask 077
log=$(mktemp)
ext=$(mktemp)
trap 'rm -f "$log" "$ext" "$out"/*.csr' EXIT
quiet() { "$@" 2>"$log" || { cat "$log" >&2; echo "make-certs.sh: failed: $*" >&2; exit 1; }; }
san="DNS:localhost,IP:127.0.0.1"
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san+=",IP:$name"; else san+=",DNS:$name"; fi
done

if [ -f "$out/ca.pem" ] && [ -f "$out/ca-key.pem" ]; then
  echo "reusing the CA in $out"
else
  quiet openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
    -days "$days" -subj "/CN=etl-dask-ca" -keyout "$out/ca-key.pem" -out "$out/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi

cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
EXT
# Scheduler and workers both accept and open connections, so every certificate serves both ways.
for role in scheduler worker client; do
  quiet openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
    -subj "/CN=etl-dask-$role" -keyout "$out/$role-key.pem" -out "$out/$role.csr"
  quiet openssl x509 -req -sha256 -days "$days" -in "$out/$role.csr" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$ext" -out "$out/$role.pem"
  openssl verify -CAfile "$out/ca.pem" "$out/$role.pem" >/dev/null
done
chmod 0644 "$out/ca.pem" "$out/scheduler.pem" "$out/worker.pem" "$out/client.pem"
echo "certificates for $san in $out"
