#!/usr/bin/env bash
# The reference chat app, all of it, on a fresh machine: installs what is missing, builds and
# installs memory_ext (release), starts a throwaway PostgreSQL on 127.0.0.1:55450 with a database
# `chat`, the LLM, and the app on http://127.0.0.1:8300, and prints sign-in links for two demo
# users (alice, bob). Ctrl-C stops everything.
#
# Offline by default: replies come from the test suite's stand-in OpenAI-compatible server
# (labelled as such on the page). With LLM_API_KEY set, memory_ext calls a real provider:
# LLM_BASE_URL (default Groq, https://api.groq.com/openai/v1) and LLM_MODEL
# (default llama-3.3-70b-versatile). The key goes to the server with ALTER SYSTEM, never on a
# command line.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
export USER=${USER:-$(id -un)}
scripts/setup.sh

DIR=${CHAT_APP_ROOT:-/tmp/memory_ext-chat-app}
PORT=${CHAT_APP_DB_PORT:-55450}
LLM_PORT=$((PORT + 1))
APP_PORT=${CHAT_APP_PORT:-8300}

echo "== building and installing memory_ext (release)"
scripts/install.sh --release

pids=()
stop() { trap - EXIT INT TERM; kill "${pids[@]}" 2>/dev/null || true; "$ROOT/scripts/cluster.sh" stop "$DIR"; exit 0; }
trap stop EXIT INT TERM
scripts/cluster.sh stop "$DIR"
rm -rf "$DIR"

if [ -n "${LLM_API_KEY:-}" ]; then
    BASE_URL=${LLM_BASE_URL:-https://api.groq.com/openai/v1}
    MODEL=${LLM_MODEL:-llama-3.3-70b-versatile}
    STAND_IN=0
else
    python3 tests/support/fake_llm.py "$LLM_PORT" &
    pids+=($!)
    BASE_URL=http://127.0.0.1:$LLM_PORT/v1 MODEL=stand-in STAND_IN=1
fi

scripts/cluster.sh start "$DIR" "$PORT" "memory.worker_database=chat" \
    "memory.llm_base_url=$BASE_URL" "memory.llm_model=$MODEL"
psql() { command psql -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -q "$@"; }
if [ -n "${LLM_API_KEY:-}" ]; then
    psql -c "ALTER SYSTEM SET memory.llm_api_key = '${LLM_API_KEY//\'/\'\'}'" -c "SELECT pg_reload_conf()" >/dev/null
fi
psql -c "CREATE DATABASE chat"
psql -d chat -f examples/chat-app/setup.sql

export CHAT_APP_DATABASE_URL="host=127.0.0.1 port=$PORT dbname=chat user=chat_app"
export CHAT_APP_JWT_SECRET=${CHAT_APP_JWT_SECRET:-$(python3 -c 'import secrets; print(secrets.token_hex(32))')}
export CHAT_APP_STAND_IN=$STAND_IN
# voice: the same provider's audio endpoints (Groq serves Whisper transcriptions); replies are read
# aloud by the provider with CHAT_APP_SPEECH_MODEL set, else by the browser
export CHAT_APP_AUDIO_BASE_URL=$BASE_URL
if [ -n "${LLM_API_KEY:-}" ]; then
    export CHAT_APP_AUDIO_API_KEY=$LLM_API_KEY
else
    export CHAT_APP_SPEECH_MODEL=${CHAT_APP_SPEECH_MODEL:-stand-in-tts}
fi
cd examples/chat-app
echo
for name in alice bob; do
    echo "  $name: http://127.0.0.1:$APP_PORT/#token=$(python3 -m chat_app token "$name")"
done
echo
python3 -m uvicorn chat_app.server:app --host 127.0.0.1 --port "$APP_PORT" --no-access-log &
pids+=($!)
wait "${pids[-1]}"
