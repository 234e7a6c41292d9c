#!/usr/bin/env bash
# memory_ext and Citus, one node next to a coordinator with two workers on loopback:
#   bench/citus_policies.py  the shapes the authorization rule could take (bench/results/citus-policies.md)
#   bench/citus_core.py      add_message, build_context and search routed by Citus, without and under the
#                            rule (bench/results/citus-core.md)
#   bench/citus.sh [--smoke]    (MEMORY_EXT_BENCH_SCALES: bench/citus_core.py's --scales, total messages)
set -euo pipefail
cd "$(dirname "$0")/.."
export USER=${USER:-$(id -un)}
export PYTHONPATH="$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
scripts/setup.sh
DIR=${MEMORY_EXT_BENCH_ROOT:-/tmp/memory_ext-bench}/citus
PORT=${MEMORY_EXT_BENCH_PORT:-55450}
SMOKE=0; [ "${1:-}" = "--smoke" ] && SMOKE=1
OUT=${MEMORY_EXT_BENCH_OUT:-bench/results}
[ $SMOKE = 1 ] && OUT=${MEMORY_EXT_BENCH_OUT:-target/bench-smoke}
single=$((PORT + 10)) coordinator=$((PORT + 11))
stop() { scripts/cluster.sh stop "$DIR/single"; scripts/citus.sh stop "$DIR/cluster"; }
trap stop EXIT
stop
rm -rf "$DIR"
# notify_messages off on both: a NOTIFY on a shard cannot be part of a two-phase commit (docs/scaling.md)
# the same node secret on every node: calls under the rule pass their caller (memory.pass_caller)
secret="memory.node_secret=benchmark-node-secret-0123456789abcdef"
scripts/cluster.sh start "$DIR/single" "$single" "shared_buffers=256MB" "memory.worker_enabled=off" "memory.notify_messages=off" "$secret"
psql -qX -h 127.0.0.1 -p "$single" -U postgres -c "CREATE DATABASE policies" >/dev/null
scripts/citus.sh start "$DIR/cluster" policies "$coordinator" "$((coordinator + 1))" "$((coordinator + 2))" \
    "shared_buffers=256MB" "memory.worker_enabled=off" "memory.notify_messages=off" "$secret"
mkdir -p "$OUT"
policies=() core=(--scales "${MEMORY_EXT_BENCH_SCALES:-100000,1000000}")
[ $SMOKE = 1 ] && policies=(--reps 1) && core=(--reps 1 --scales 500 --messages 50 --calls 20)
python3 bench/citus_policies.py --single "host=127.0.0.1 port=$single dbname=policies user=postgres" \
    --coordinator "host=127.0.0.1 port=$coordinator dbname=policies user=postgres" --out "$OUT/citus-policies.md" "${policies[@]}"
python3 bench/citus_core.py --single "host=127.0.0.1 port=$single dbname=policies user=postgres" \
    --coordinator "host=127.0.0.1 port=$coordinator dbname=policies user=postgres" --out "$OUT/citus-core.md" "${core[@]}"
