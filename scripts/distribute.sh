#!/usr/bin/env bash
# Turns a memory_ext database into memory_ext's distributed layout on Citus (docs/scaling.md):
#   scripts/distribute.sh CONNINFO      e.g. scripts/distribute.sh "host=coordinator dbname=app user=postgres"
# Run it as a superuser on the coordinator, once the database has citus on every node with the
# workers added (citus_add_node) and memory_ext (created on the coordinator, which creates it on the
# workers); memory.node_secret set on every node lets users' calls reach the workers.
# The coordinator's part runs in one transaction: an error leaves the coordinator's tables as they
# were. Dropping the workers' copies' policies and copying functions to the workers are committed
# on each worker as they go; running the script again after an error redoes them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 1 ]; then
    echo "usage: $0 CONNINFO" >&2
    exit 2
fi
psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d "$1" \
    -f sql/citus/route_by_conversation.sql -f sql/citus/rule_on_rows.sql
