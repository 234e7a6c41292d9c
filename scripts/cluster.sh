#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster on loopback for tests, the demo and benchmarks.
#   scripts/cluster.sh start DIR PORT [postgres -c options...]   (initdb on first use)
#   scripts/cluster.sh stop DIR
# The server runs as the postgres OS user (initdb and postgres refuse root); the socket
# lives in DIR/sock, and only 127.0.0.1 listens.
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cmd=$1 dir=$2
as_pg() { if [ "$(id -u)" = 0 ]; then sudo -u postgres "$@"; else "$@"; fi; }

case "$cmd" in
start)
    port=$3; shift 3
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1
        as_pg mkdir -p "$dir/sock"
    fi
    opts="-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
    # MEMORY_EXT_PRELOAD: what to preload instead (the Citus test stage: citus,memory_ext)
    [ "${NO_PRELOAD:-0}" = 1 ] || opts="$opts -c shared_preload_libraries=${MEMORY_EXT_PRELOAD:-memory_ext}"
    opts="$opts -c wal_level=replica -c max_wal_senders=4"
    for o in "$@"; do opts="$opts -c $o"; done
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "$opts" -w -t 60 start >/dev/null
    ;;
stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null ||
            as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || true
    fi
    ;;
*)
    echo "usage: $0 start DIR PORT [opts] | stop DIR" >&2; exit 2 ;;
esac
