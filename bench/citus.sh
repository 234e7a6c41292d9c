#!/usr/bin/env bash
# The row-level security shapes on one node and on a three-node Citus cluster on loopback
# (bench/citus_policies.py): writes bench/results/citus-policies.md.
#   bench/citus.sh [--reps N]
set -euo pipefail
cd "$(dirname "$0")/.."
export USER=${USER:-$(id -un)}
scripts/setup.sh
DIR=${MEMORY_EXT_BENCH_ROOT:-/tmp/memory_ext-bench}/citus
PORT=${MEMORY_EXT_BENCH_PORT:-55450}
OUT=${MEMORY_EXT_BENCH_OUT:-bench/results}
single=$((PORT + 10)) coordinator=$((PORT + 11))
stop() { scripts/cluster.sh stop "$DIR/single"; scripts/citus.sh stop "$DIR/cluster"; }
trap stop EXIT
stop
rm -rf "$DIR"
NO_PRELOAD=1 scripts/cluster.sh start "$DIR/single" "$single" "shared_buffers=256MB"
psql -qX -h 127.0.0.1 -p "$single" -U postgres -c "CREATE DATABASE policies" >/dev/null
scripts/citus.sh start "$DIR/cluster" policies "$coordinator" "$((coordinator + 1))" "$((coordinator + 2))" "shared_buffers=256MB"
mkdir -p "$OUT"
python3 bench/citus_policies.py --single "host=127.0.0.1 port=$single dbname=policies user=postgres" \
    --coordinator "host=127.0.0.1 port=$coordinator dbname=policies user=postgres" --out "$OUT/citus-policies.md" "$@"
