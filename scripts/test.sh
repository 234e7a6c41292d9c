#!/usr/bin/env bash
# The whole test suite, on PostgreSQL 15 and 18 (scripts/postgres_versions.sh):
#   0. lint: cargo fmt --check, cargo clippy -D warnings, ruff over the Python code
#   1. unit tests of the pure modules and #[pg_test]s (cargo pgrx test, server run as postgres),
#      on 15 and on 18
#   2. pg_regress files under tests/pg_regress against a throwaway cluster with the library preloaded
#   3. end-to-end tests (pytest, tests/e2e): RLS as PostgREST applies it, concurrency, bad input,
#      token parity with Python tiktoken, read-only and hot-standby build_context, the worker (its
#      calls in flight, crashes), attacks as an ordinary login, upgrades from every release, and a
#      30 s stress of signals (reloads, NOTIFY, cancels) during LLM calls
#   4. the Python package (tests/python): its clients and adapters through LangChain's and
#      LlamaIndex's own interfaces, and the examples, against a cluster and the stand-in LLM
#   4b. the end-to-end tests again in Citus databases (a coordinator and two workers on loopback;
#      PostgreSQL 15 only)
#   5. the reference chat app (examples/chat-app): its page's components (Vitest), its HTTP API over real HTTP, and its page in
#      headless Chromium (Playwright), screenshots in target/chat-app-screenshots/
#   6. a benchmark smoke run (tiny sizes)
# Steps 2-4 run on PostgreSQL 15, then again on 18; the chat app and the benchmarks use 15 only
# (they test the application and the speed, not the server's version).
# Exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export USER=${USER:-$(id -un)}
scripts/setup.sh

. scripts/postgres_versions.sh
TEST_ROOT=${MEMORY_EXT_TEST_ROOT:-/tmp/memory_ext-test}
PORT=${MEMORY_EXT_TEST_PORT:-55433}
# PostgreSQL 18's suites run after 15's, on ports of their own
PG18_ROOT="$TEST_ROOT/pg18"
PG18_PORT=$((PORT + 40))

echo "== lint: rustfmt, clippy (warnings are errors), ruff"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
python3 -m ruff check --quiet python tests bench examples scripts

for pg in 15 18; do
    echo "== unit tests and pg_tests (PostgreSQL $pg)"
    install -d -o postgres "/tmp/memory_ext-pgrx-test/$pg"
    cargo pgrx test "pg$pg" --runas postgres --pgdata "/tmp/memory_ext-pgrx-test/$pg/data"
done

# The test servers listen on fixed ports inside Linux's ephemeral range: keep the kernel from
# handing those ports to outgoing connections (a client socket on 55434 once kept a replica from
# starting). Needs root; elsewhere pick free ports with MEMORY_EXT_TEST_PORT.
(echo 55400-55519 > /proc/sys/net/ipv4/ip_local_reserved_ports) 2>/dev/null || true

cleanup() {
    scripts/cluster.sh stop "$TEST_ROOT/primary"; scripts/cluster.sh stop "$TEST_ROOT/replica"
    scripts/citus.sh stop "$TEST_ROOT/citus"
    for d in "$PG18_ROOT/primary" "$PG18_ROOT/replica"; do
        PGBIN=$("$PG18_CONFIG" --bindir) scripts/cluster.sh stop "$d"
    done
}
trap cleanup EXIT
cleanup
rm -rf "$TEST_ROOT"

# The extension's own suites against one PostgreSQL: install (with the released scripts and the
# generated upgrade script, for the upgrade test), a throwaway cluster, pg_regress, the
# end-to-end tests and the Python package's tests.
#   server_suites PG_CONFIG ROOT PORT
server_suites() {
    local pg_config=$1 root=$2 port=$3 version
    version=$("$pg_config" --version)
    export PGBIN MEMORY_EXT_TEST_ROOT="$root" MEMORY_EXT_TEST_PORT="$port"
    PGBIN=$("$pg_config" --bindir)
    echo "== install the extension into $version"
    scripts/install.sh "$pg_config"
    scripts/cluster.sh start "$root/primary" "$port"

    echo "== pg_regress ($version)"
    local regress out
    regress=$(dirname "$("$pg_config" --pgxs)")/../test/regress/pg_regress
    out=target/regress/$(basename "$root")
    mkdir -p "$out" && chmod 777 target/regress "$out"
    # shellcheck disable=SC2046  # one argument per test file
    if ! "$regress" --bindir="$PGBIN" --host=127.0.0.1 --port="$port" --user=postgres \
            --inputdir=tests/pg_regress --outputdir="$out" --dbname=memory_regress \
            $(ls tests/pg_regress/sql | sed 's/\.sql$//' | sort); then
        cat "$out/regression.diffs" || true
        exit 1
    fi

    echo "== end-to-end tests ($version)"
    python3 -m pytest -q -p no:cacheprovider tests/e2e

    echo "== the Python package (python/): client, LangChain and LlamaIndex adapters, examples ($version)"
    python3 -m pytest -q -p no:cacheprovider tests/python
}

server_suites "$PG15_CONFIG" "$TEST_ROOT" "$PORT"

# memory_ext in a Citus database: every cluster the tests start preloads Citus, the primary is a
# coordinator with two workers, and every test database (and every cluster of a worker test) has
# Citus active (tests/support/pg.py CITUS_WORKERS); memory_ext's tables stay on the coordinator.
# PostgreSQL 15 only: Citus is built for it from vendor/.
citus_suites() {
    local root=$TEST_ROOT/citus port=$((PORT + 61))
    # the workers take the two offsets from the primary that no e2e module's own cluster uses
    local worker1=$((port + 5)) worker2=$((port + 7))
    echo "== end-to-end tests in Citus $CITUS_VERSION databases: a coordinator and two workers (PostgreSQL 15)"
    export MEMORY_EXT_PRELOAD=citus,memory_ext
    scripts/citus.sh start "$root" postgres "$port" "$worker1" "$worker2"
    MEMORY_EXT_TEST_ROOT="$root" MEMORY_EXT_TEST_PORT="$port" MEMORY_EXT_TEST_CITUS_WORKERS="$worker1,$worker2" \
        python3 -m pytest -q -p no:cacheprovider tests/e2e
    scripts/citus.sh stop "$root"
    unset MEMORY_EXT_PRELOAD
}
citus_suites

echo "== the reference chat app (examples/chat-app): the page's components (Vitest), its HTTP API, and the page in headless Chromium"
(cd examples/chat-app/web && npm test --silent)
python3 -m pytest -q -p no:cacheprovider tests/chat_app

echo "== benchmark smoke run (tiny sizes; the full run is bench/run.sh)"
MEMORY_EXT_BENCH_ROOT="$TEST_ROOT/bench" MEMORY_EXT_BENCH_PORT=$((PORT + 20)) bench/run.sh --smoke
MEMORY_EXT_BENCH_ROOT="$TEST_ROOT/bench" MEMORY_EXT_BENCH_PORT=$((PORT + 20)) bench/citus.sh --smoke

server_suites "$PG18_CONFIG" "$PG18_ROOT" "$PG18_PORT"
echo "== all tests passed"
