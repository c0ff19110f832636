# Sourced by scheduler.sh and worker.sh: sets the array TLS_ARGS for role $1 (scheduler|worker).
# TLS is on unless ETL_TLS=0. Files: ETL_TLS_CA_FILE, ETL_TLS_CERT, ETL_TLS_KEY, by default
# ca.pem, <role>.pem and <role>-key.pem in ETL_TLS_DIR (default ~/.config/etl/tls), as
# written by make-certs.sh.
tls_args() {
  local role=$1 dir=${ETL_TLS_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/etl/tls}
  TLS_ARGS=()
  case ${ETL_TLS:-1} in
    0|false|no|off) return 0 ;;
    1|true|yes|on) ;;
    *) echo "$role.sh: ETL_TLS must be 1 or 0, found '${ETL_TLS}'" >&2; return 1 ;;
  esac
  local ca=${ETL_TLS_CA_FILE:-$dir/ca.pem} cert=${ETL_TLS_CERT:-$dir/$role.pem} key=${ETL_TLS_KEY:-$dir/$role-key.pem}
  local f
  for f in "$ca" "$cert" "$key"; do
    if [ ! -r "$f" ]; then
      echo "$role.sh: TLS is on but $f is missing or unreadable. Make certificates with" \
           "'cluster/hosts/make-certs.sh $dir', point ETL_TLS_DIR (or ETL_TLS_CA_FILE/ETL_TLS_CERT/ETL_TLS_KEY)" \
           "at yours, or set ETL_TLS=0 for plain TCP on a trusted network." >&2
      return 1
    fi
  done
  TLS_ARGS=(--tls-ca-file "$ca" --tls-cert "$cert" --tls-key "$key")
}
