#!/usr/bin/env bash
# The whole test suite:
#   0. lint: cargo fmt --check, cargo clippy -D warnings, ruff over the Python code
#   1. unit tests of the pure modules and #[pg_test]s (cargo pgrx test, server run as postgres)
#   2. pg_regress files under tests/pg_regress against a throwaway cluster with the library preloaded
#   3. end-to-end tests (pytest, tests/e2e): RLS as PostgREST applies it, concurrency, bad input,
#      token parity with Python tiktoken, read-only and hot-standby build_context, the worker (its
#      calls in flight, crashes), attacks as an ordinary login, upgrades from every release, and a
#      30 s stress of signals (reloads, NOTIFY, cancels) during LLM calls
#   4. the Python package (tests/python): its clients and adapters through LangChain's and
#      LlamaIndex's own interfaces, and the examples, against a cluster and the stand-in LLM
#   5. the reference chat app (examples/chat-app): its HTTP API over real HTTP, and its page in
#      headless Chromium (Playwright), screenshots in target/chat-app-screenshots/
# Exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export USER=${USER:-$(id -un)}
scripts/setup.sh

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
TEST_ROOT=${MEMORY_EXT_TEST_ROOT:-/tmp/memory_ext-test}
PORT=${MEMORY_EXT_TEST_PORT:-55433}

echo "== lint: rustfmt, clippy (warnings are errors), ruff"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
python3 -m ruff check --quiet python tests bench examples scripts

echo "== unit tests and pg_tests"
install -d -o postgres /tmp/memory_ext-pgrx-test
cargo pgrx test pg15 --runas postgres --pgdata /tmp/memory_ext-pgrx-test/data

echo "== install the extension"
# with the released scripts and the generated upgrade script, for the upgrade test
scripts/install.sh "$PG_CONFIG"

# The test servers listen on fixed ports inside Linux's ephemeral range: keep the kernel from
# handing those ports to outgoing connections (a client socket on 55434 once kept a replica from
# starting). Needs root; elsewhere pick free ports with MEMORY_EXT_TEST_PORT.
(echo 55400-55499 > /proc/sys/net/ipv4/ip_local_reserved_ports) 2>/dev/null || true

cleanup() { scripts/cluster.sh stop "$TEST_ROOT/primary"; scripts/cluster.sh stop "$TEST_ROOT/replica"; }
trap cleanup EXIT
cleanup
rm -rf "$TEST_ROOT"
scripts/cluster.sh start "$TEST_ROOT/primary" "$PORT"

echo "== pg_regress"
REGRESS=$(dirname "$($PG_CONFIG --pgxs)")/../test/regress/pg_regress
mkdir -p target/regress && chmod 777 target/regress
tests=$(ls tests/pg_regress/sql | sed 's/\.sql$//' | sort)
if ! "$REGRESS" --host=127.0.0.1 --port="$PORT" --user=postgres --inputdir=tests/pg_regress \
        --outputdir=target/regress --dbname=memory_regress $tests; then
    cat target/regress/regression.diffs || true
    exit 1
fi

echo "== end-to-end tests"
MEMORY_EXT_TEST_ROOT="$TEST_ROOT" MEMORY_EXT_TEST_PORT="$PORT" \
    python3 -m pytest -q -p no:cacheprovider tests/e2e

echo "== the Python package (python/): client, LangChain and LlamaIndex adapters, examples"
MEMORY_EXT_TEST_ROOT="$TEST_ROOT" MEMORY_EXT_TEST_PORT="$PORT" \
    python3 -m pytest -q -p no:cacheprovider tests/python

echo "== the reference chat app (examples/chat-app): its HTTP API, and the page in headless Chromium"
MEMORY_EXT_TEST_ROOT="$TEST_ROOT" MEMORY_EXT_TEST_PORT="$PORT" \
    python3 -m pytest -q -p no:cacheprovider tests/chat_app

echo "== benchmark smoke run (tiny sizes; the full run is bench/run.sh)"
MEMORY_EXT_BENCH_ROOT="$TEST_ROOT/bench" MEMORY_EXT_BENCH_PORT=$((PORT + 20)) bench/run.sh --smoke
echo "== all tests passed"
