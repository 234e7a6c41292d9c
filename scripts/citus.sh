#!/usr/bin/env bash
# A three-node Citus cluster on loopback: a coordinator and two workers, each a scripts/cluster.sh
# cluster with shared_preload_libraries = 'citus,memory_ext'.
#   scripts/citus.sh start DIR DBNAME PORT WORKER_PORT WORKER_PORT [postgres -c options...]
#       starts the three nodes (initdb on first use), creates DBNAME with the citus extension on
#       each, and joins the workers to the coordinator
#   scripts/citus.sh stop DIR
# Citus itself is built from vendor/ by scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=$1 dir=$2

case "$cmd" in
start)
    db=$3 ports=("$4" "$5" "$6"); shift 6
    port=${ports[0]}
    for i in 0 1 2; do
        # max_prepared_transactions: Citus commits a transaction that wrote on several nodes in two phases
        MEMORY_EXT_PRELOAD=citus,memory_ext scripts/cluster.sh start "$dir/node$i" "${ports[$i]}" \
            "max_prepared_transactions=64" "$@"
        psql -qX -h 127.0.0.1 -p "${ports[$i]}" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT format('CREATE DATABASE %I', '$db') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$db') \gexec
\c $db
CREATE EXTENSION IF NOT EXISTS citus;
SQL
    done
    psql -qX -h 127.0.0.1 -p "$port" -U postgres -d "$db" -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT citus_set_coordinator_host('127.0.0.1', $port);
SELECT citus_add_node('127.0.0.1', ${ports[1]}) WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE nodeport = ${ports[1]});
SELECT citus_add_node('127.0.0.1', ${ports[2]}) WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE nodeport = ${ports[2]});
SQL
    ;;
stop)
    for i in 0 1 2; do scripts/cluster.sh stop "$dir/node$i"; done
    ;;
*)
    echo "usage: $0 start DIR DBNAME PORT WORKER_PORT WORKER_PORT [opts] | stop DIR" >&2; exit 2 ;;
esac
