"""The database the write and turn benchmarks run in, shared by bench.py and turns.py."""
import os

import psycopg


def setup_writes_db(port):
    with psycopg.connect(f"host=127.0.0.1 port={port} dbname=postgres user=postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS bench WITH (FORCE)")  # (a worker may serve it)
        c.execute("CREATE DATABASE bench")
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = 'bench'").fetchone():
            c.execute("CREATE ROLE bench LOGIN")
    # MEMORY_EXT_BENCH_VERSION=0.1.0 measures a released version's SQL (with its library installed)
    version = os.environ.get("MEMORY_EXT_BENCH_VERSION")
    with psycopg.connect(f"host=127.0.0.1 port={port} dbname=bench user=postgres", autocommit=True) as c:
        c.execute("CREATE EXTENSION memory_ext" + (f" VERSION '{version}'" if version else "") + " CASCADE")
        c.execute("ALTER DATABASE bench SET memory.user_id_roles = 'bench'")
