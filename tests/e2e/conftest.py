"""Fixtures for the end-to-end tests: the primary cluster (support.pg), one fresh database per
test module, and the stand-in LLM."""
import psycopg
import pytest

from support.fake_llm import FakeLLM
from support.pg import CITUS_WORKERS, PORT, dsn, start_primary


@pytest.fixture(scope="session")
def cluster():
    return start_primary()


@pytest.fixture(scope="module")
def db(cluster, request):
    """A fresh database with the extension, named after the test module."""
    name = "e2e_" + request.module.__name__.split(".")[-1]
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(dsn(name), autocommit=True) as c:
        if CITUS_WORKERS:
            citus_database(c, name)
        c.execute("CREATE EXTENSION memory_ext CASCADE")
        c.execute(f"GRANT ALL ON DATABASE {name} TO PUBLIC")
        # the application server's pooled login may assert identities with memory.user_id
        c.execute(f"ALTER DATABASE {name} SET memory.user_id_roles = 'app'")
    return name


def citus_database(c, name):
    """Makes `name` a Citus database: the extension on every node, the workers joined."""
    for port in CITUS_WORKERS:
        with psycopg.connect(dsn(port=port), autocommit=True) as w:
            w.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            w.execute(f"CREATE DATABASE {name}")
        with psycopg.connect(dsn(name, port=port), autocommit=True) as w:
            w.execute("CREATE EXTENSION citus")
    c.execute("CREATE EXTENSION citus")
    c.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (PORT,))
    for port in CITUS_WORKERS:
        c.execute("SELECT citus_add_node('127.0.0.1', %s)", (port,))
    active = c.execute("SELECT count(*) FROM citus_get_active_worker_nodes()").fetchone()[0]
    assert active == len(CITUS_WORKERS), f"{active} Citus workers active in {name}"


@pytest.fixture(scope="module")
def llm():
    """The fake OpenAI-compatible server on 127.0.0.1 (support/fake_llm.py), one per module."""
    fake = FakeLLM()
    yield fake
    fake.stop()


@pytest.fixture
def llm_ok(llm):
    """The stand-in answering normally, before and after a test that may change its mode."""
    llm.mode, llm.delay, llm.ok_requests_left = "ok", 0.0, None
    yield llm
    llm.mode, llm.delay, llm.ok_requests_left = "ok", 0.0, None
