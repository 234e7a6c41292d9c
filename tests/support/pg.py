"""The test clusters and how tests connect to them: every suite's real PostgreSQL on loopback
(started by scripts/test.sh, or by the fixtures when a suite runs alone), DSNs, the identities
PostgREST and an application server assert, clusters of a test's own, and waiting."""
import contextlib
import json
import os
import subprocess
import time
import uuid

import psycopg
from psycopg import sql

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_ROOT = os.environ.get("MEMORY_EXT_TEST_ROOT", "/tmp/memory_ext-test")
PORT = int(os.environ.get("MEMORY_EXT_TEST_PORT", "55433"))
# the Citus stage of scripts/test.sh: the primary is a Citus coordinator, these are its workers'
# ports, every test database is a Citus database, and llm_cluster's clusters run Citus too
CITUS_WORKERS = [int(p) for p in os.environ.get("MEMORY_EXT_TEST_CITUS_WORKERS", "").split(",") if p]
# the PostgreSQL under test (scripts/cluster.sh reads the same variable)
BIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")


def dsn(dbname="postgres", user="postgres", port=PORT):
    return f"host=127.0.0.1 port={port} dbname={dbname} user={user}"


def start_primary():
    """Makes sure the primary cluster is up, with the tests' roles (create_roles)."""
    try:
        psycopg.connect(dsn(), connect_timeout=2).close()
    except psycopg.OperationalError:
        subprocess.run([os.path.join(ROOT, "scripts/cluster.sh"), "start", f"{TEST_ROOT}/primary", str(PORT)], check=True)
    with psycopg.connect(dsn(), autocommit=True) as c:
        create_roles(c)
    return PORT


def create_roles(c):
    """The roles the tests log in as or switch to, as PostgREST/Supabase has them: the
    application server's login `app`, an end user's own login `enduser`, and the gateway login
    `authenticator`, which may switch to `authenticated` and `anon`."""
    for role, opts in (("authenticated", "NOLOGIN"), ("anon", "NOLOGIN"), ("app", "LOGIN"), ("enduser", "LOGIN"),
                       ("authenticator", "LOGIN NOINHERIT")):
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            c.execute(f"CREATE ROLE {role} {opts}")
    c.execute("GRANT authenticated, anon TO authenticator")


def connect(db, user="postgres", **kw):
    return psycopg.connect(dsn(db, user), autocommit=True, **kw)


def new_user():
    return str(uuid.uuid4())


@contextlib.contextmanager
def as_guc_user(db, user_id, role="app"):
    """An application server: its own login role, identity in the memory.user_id setting."""
    with connect(db, role) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (user_id,))
        yield c


@contextlib.contextmanager
def as_jwt_user(db, user_id, role="authenticated"):
    """Exactly what PostgREST does per request: logged in as `authenticator`, one transaction,
    SET LOCAL ROLE, claims as a transaction-local setting. Everything run on the yielded cursor
    happens in that request."""
    with connect(db, "authenticator") as c:
        with c.transaction():
            c.execute(f"SET LOCAL ROLE {role}")
            claims = json.dumps({"sub": user_id, "role": role}) if user_id else json.dumps({"role": role})
            c.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
            yield c


def rpc(conn, sql, *args):
    return conn.execute(sql, args).fetchone()[0]


def cluster_sh(*args):
    """scripts/cluster.sh with `args` (start ROOT PORT, stop ROOT), failing where it fails."""
    subprocess.run([os.path.join(ROOT, "scripts/cluster.sh"), *map(str, args)], check=True)


def start_new_cluster(root, port, prepare, settings):
    """A new cluster under `root` on `port` (any earlier one there removed): `prepare` runs on a
    superuser connection to its database postgres, `settings` are written with ALTER SYSTEM (in
    postgresql.auto.conf: restarts keep them; a key is never on a command line), and a restart
    applies them."""
    cluster_sh("stop", root)
    subprocess.run(["rm", "-rf", root], check=True)
    cluster_sh("start", root, port)
    with psycopg.connect(dsn(port=port), autocommit=True) as c:
        prepare(c)
        for key, value in settings.items():
            c.execute(f"ALTER SYSTEM SET {key} = '{value}'")
    cluster_sh("stop", root)
    cluster_sh("start", root, port)


@contextlib.contextmanager
def llm_cluster(name, port, settings):
    """A cluster of its own (under TEST_ROOT/name, on `port`) whose settings, e.g. the fake LLM's
    address and key, are written with ALTER SYSTEM, with memory_ext created in database postgres.
    Yields the port."""
    def prepare(c):
        if CITUS_WORKERS:
            # the Citus stage preloads Citus everywhere (MEMORY_EXT_PRELOAD): here a one-node
            # Citus cluster, Citus active around the worker and every turn
            c.execute("CREATE EXTENSION citus")
        c.execute("CREATE EXTENSION memory_ext CASCADE")
        create_roles(c)

    root = f"{TEST_ROOT}/{name}"
    start_new_cluster(root, port, prepare, settings)
    time.sleep(0.5)
    try:
        yield port
    finally:
        cluster_sh("stop", root)


def app_on(port, user_id):
    """The application login `app` on a cluster of its own (by port), asserting `user_id`."""
    c = psycopg.connect(dsn(user="app", port=port), autocommit=True)
    c.execute("SELECT set_config('memory.user_id', %s, false)", (user_id,))
    return c


def admin_on(port):
    """The superuser on a cluster of its own (by port)."""
    return psycopg.connect(dsn(port=port), autocommit=True)


def fetch_on(port, sql, *args):
    """One row of a query as the superuser on a cluster of its own, on a connection closed right after."""
    with admin_on(port) as c:
        return c.execute(sql, args).fetchone()


def reload_setting(port, name, value):
    """ALTER SYSTEM SET name = value on a cluster of its own, then a reload (and a moment for the
    worker to take it up)."""
    with admin_on(port) as c:
        c.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        c.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)


@contextlib.contextmanager
def app_session(port, uid=None):
    """The application login on a cluster of its own, asserting `uid` (a new user by default)."""
    with app_on(port, uid or str(uuid.uuid4())) as c:
        yield c


def search(c, query, **kw):
    """memory.search_messages with named arguments (limit is quoted: a keyword)."""
    name = {"limit": '"limit"'}
    args = "".join(f", {name.get(k, k)} => %({k})s" for k in kw)
    return c.execute(f"SELECT memory.search_messages(%(q)s{args})", {"q": query, **kw}).fetchone()[0]


def wait_for(pred, timeout=20, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def call_passing_the_caller(c, query, *args):
    """One call on connection `c` in a transaction of its own with the caller passed
    (memory.pass_caller), as PostgREST's db-pre-request makes it; all its rows."""
    with c.transaction():
        c.execute("SELECT memory.pass_caller()")
        return c.execute(query, args).fetchall()


def call_as(db, user, query, *args):
    """One call as `user` through the application login, in its own transaction with the caller
    passed; all its rows."""
    with as_guc_user(db, user) as c:
        return call_passing_the_caller(c, query, *args)


def set_node_secret(value, ports):
    """memory.node_secret on each node (ALTER SYSTEM and a reload), waiting until new sessions see it."""
    for port in ports:
        with psycopg.connect(dsn(port=port), autocommit=True) as c:
            if value is None:
                c.execute("ALTER SYSTEM RESET memory.node_secret")
            else:
                c.execute("ALTER SYSTEM SET memory.node_secret = %s" % sql.quote(value))
            c.execute("SELECT pg_reload_conf()")

        def seen(port=port):
            with psycopg.connect(dsn(port=port), autocommit=True) as c:
                return c.execute("SELECT current_setting('memory.node_secret', true)").fetchone()[0] == (value or "")
        wait_for(seen)
