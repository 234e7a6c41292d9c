#!/usr/bin/env bash
# Benchmarks memory_ext side by side with what applications use otherwise (see Performance in README.md).
#   bench/run.sh            full run (1k/10k/100k-message conversations), writes bench/results/
#   bench/run.sh --smoke    tiny sizes, one repetition: checks that every part still runs (and the append profile, recall)
#   bench/run.sh --soak N   writers + readers + the worker for N seconds: latency p50/p99, memory
#   bench/run.sh --adapters the Python adapters alone (10,000-message history), bench/results/adapters.md
#   bench/run.sh --history  export, import and fork alone (10,000-message history), bench/results/history.md
#   bench/run.sh --search   search_messages and the analytics views alone (1,000,000 messages of 1,000 users), bench/results/search.md
#   bench/run.sh --recall   semantic and hybrid search next to text search (the same 1,000,000 messages, with embeddings), bench/results/recall.md
#   bench/run.sh --sharing  the authorization rule's cost with shared conversations (10,000-message history), bench/results/sharing.md
#   bench/run.sh --scale    search and listing for users with 30,000 own / 20,000 shared conversations / a share bomb, bench/results/scale.md
#   bench/run.sh --append-profile  add_message's server time by function (track_functions), bench/results/append-profile.md
#   bench/run.sh --replies  the worker's reply throughput (stand-in LLM at 0, 0.5 and 2 s; 1, 4, 8 calls in flight), bench/results/replies.md
set -euo pipefail
cd "$(dirname "$0")/.."
# tests/support: the clusters' helpers, the stand-in LLM, tiktoken without network
export PYTHONPATH="$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
export USER=${USER:-$(id -un)}
scripts/setup.sh
if ! python3 -c 'import langchain_core, langchain_postgres, matplotlib' 2>/dev/null; then
    echo "== pip install -r bench/requirements.txt"
    python3 -m pip install -q --disable-pip-version-check -r bench/requirements.txt
fi
SMOKE=0; [ "${1:-}" = "--smoke" ] && SMOKE=1
SOAK=0; [ "${1:-}" = "--soak" ] && SOAK=${2:-60}
DIR=${MEMORY_EXT_BENCH_ROOT:-/tmp/memory_ext-bench}
PORT=${MEMORY_EXT_BENCH_PORT:-55450}
OUT=${MEMORY_EXT_BENCH_OUT:-bench/results}
[ $SMOKE = 1 ] && OUT=${MEMORY_EXT_BENCH_OUT:-target/bench-smoke}
mkdir -p "$OUT"

echo "== building memory_ext (release)"
scripts/install.sh --release
cargo build --release --example count_bench -q 2>/dev/null || cargo build --release --example count_bench

stop() { for c in preload plain soak turns; do scripts/cluster.sh stop "$DIR/$c"; done; }
trap stop EXIT
stop
rm -rf "$DIR"
if [ "${1:-}" = "--adapters" ] || [ "${1:-}" = "--history" ] || [ "${1:-}" = "--search" ] || [ "${1:-}" = "--recall" ] || [ "${1:-}" = "--sharing" ] || [ "${1:-}" = "--scale" ] || [ "${1:-}" = "--append-profile" ]; then
    scripts/cluster.sh start "$DIR/preload" "$PORT" "shared_buffers=1GB" "memory.worker_enabled=off"
    python3 bench/bench.py --port "$PORT" --plain-port "$PORT" --out "$OUT" --only "${1#--}"
    exit 0
fi
if [ "${1:-}" = "--replies" ]; then
    scripts/cluster.sh start "$DIR/turns" "$((PORT + 3))" "shared_buffers=256MB" "memory.worker_database=bench" "memory.worker_naptime=10"
    python3 bench/bench.py --port "$PORT" --plain-port "$PORT" --turns-port "$((PORT + 3))" --llm-port "$((PORT + 2))" \
        --out "$OUT" --replies
    exit 0
fi
if [ "$SOAK" != 0 ]; then
    scripts/cluster.sh start "$DIR/soak" "$PORT" "shared_buffers=1GB" "memory.worker_database=bench" "memory.worker_naptime=100"
    python3 bench/bench.py --port "$PORT" --plain-port "$PORT" --out "$OUT" --soak "$SOAK"
    exit 0
fi
scripts/cluster.sh start "$DIR/preload" "$PORT" "shared_buffers=1GB" "memory.worker_enabled=off"
NO_PRELOAD=1 scripts/cluster.sh start "$DIR/plain" "$((PORT + 1))" "shared_buffers=256MB"
# chat turns and reply jobs: a worker serving database bench, calling the stand-in LLM on PORT+2
scripts/cluster.sh start "$DIR/turns" "$((PORT + 3))" "shared_buffers=256MB" "memory.worker_database=bench" "memory.worker_naptime=10"
python3 bench/bench.py --port "$PORT" --plain-port "$((PORT + 1))" --turns-port "$((PORT + 3))" --llm-port "$((PORT + 2))" \
    --out "$OUT" $([ $SMOKE = 1 ] && echo --smoke)
if [ $SMOKE = 1 ]; then
    # the append profile and the recall benchmark too, so that they cannot rot unseen
    python3 bench/bench.py --port "$PORT" --plain-port "$PORT" --out "$OUT" --only append-profile --smoke
    python3 bench/bench.py --port "$PORT" --plain-port "$PORT" --llm-port "$((PORT + 2))" --out "$OUT" --only recall --smoke
fi
