#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build and install memory_ext
# (release), start a throwaway PostgreSQL on 127.0.0.1 with the library preloaded, and run the
# demo in demo/demo.sql. KEEP=1 leaves the server running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
export USER=${USER:-$(id -un)}
scripts/setup.sh

DIR=${MEMORY_EXT_DEMO_ROOT:-/tmp/memory_ext-demo}
PORT=${MEMORY_EXT_DEMO_PORT:-55440}
LLM_PORT=$((PORT + 1))

echo "== building and installing memory_ext (release)"
scripts/install.sh --release

scripts/cluster.sh stop "$DIR"
rm -rf "$DIR"
# The chat turns of the demo are answered by a stand-in: the fake OpenAI-compatible server of the
# tests, on 127.0.0.1 (no API key: summaries use the built-in extractive summarizer).
python3 tests/support/fake_llm.py "$LLM_PORT" &
LLM_PID=$!
# a fast worker and a low threshold so the demo shows a summary appear within seconds
scripts/cluster.sh start "$DIR" "$PORT" "memory.worker_naptime=200" "memory.worker_database=demo" \
    "memory.summary_keep_tokens=150" "memory.summary_max_tokens=120" \
    "memory.llm_base_url=http://127.0.0.1:$LLM_PORT/v1" "memory.llm_model=fake-model"
if [ "${KEEP:-0}" = 1 ]; then
    trap 'kill $LLM_PID 2>/dev/null || true' EXIT
else
    trap 'kill $LLM_PID 2>/dev/null || true; scripts/cluster.sh stop "$DIR"' EXIT
fi
psql -h 127.0.0.1 -p "$PORT" -U postgres -qc "CREATE DATABASE demo"
echo "== running demo/demo.sql on 127.0.0.1:$PORT"
psql -h 127.0.0.1 -p "$PORT" -U postgres -d demo -v ON_ERROR_STOP=1 -f demo/demo.sql
if [ "${KEEP:-0}" = 1 ]; then
    echo "server left running: psql -h 127.0.0.1 -p $PORT -U postgres demo   (stop: scripts/cluster.sh stop $DIR)"
    echo "(the stand-in LLM stops with this script: chat turns then fail with PT502)"
fi
