#!/usr/bin/env bash
# Builds memory_ext and installs it into a PostgreSQL: the library and this version's install
# script (cargo pgrx install), the released install and upgrade scripts (sql/released/, frozen),
# and the upgrade script to this version, generated from its schema delta (sql/deltas/) and the
# install script just built (scripts/make_upgrade.py).
#   scripts/install.sh [--release] [PG_CONFIG]      (default: Debian's PostgreSQL 15)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
if [ "${1:-}" = --release ]; then profile=(--release); shift; fi
PG_CONFIG=${1:-/usr/lib/postgresql/15/bin/pg_config}
ext="$($PG_CONFIG --sharedir)/extension"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

cargo pgrx install "${profile[@]}" --pg-config "$PG_CONFIG" >/dev/null
install -m 644 sql/released/*.sql "$ext/"
for delta in sql/deltas/*--"$version".sql; do
    [ -e "$delta" ] || continue
    name="memory_ext--$(basename "$delta")"
    # a released upgrade ships as it was released
    [ -e "sql/released/$name" ] && continue
    python3 scripts/make_upgrade.py "$delta" "$ext/memory_ext--$version.sql" > "$ext/$name.tmp"
    chmod 644 "$ext/$name.tmp" && mv "$ext/$name.tmp" "$ext/$name"
done
