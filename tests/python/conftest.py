"""Fixtures for the Python package's tests: a cluster of their own (PORT + 8) whose settings
point at the fake OpenAI-compatible server, one fresh database per module. The tests import the
installed package (scripts/setup.sh runs `pip install ./python`)."""
import uuid

import psycopg
import pytest

from support import pg as support
from support.fake_llm import FakeLLM

ROOT = support.ROOT
PORT = support.PORT + 8


def dsn(db, user="app"):
    return support.dsn(db, user, PORT)


@pytest.fixture(scope="session")
def fake():
    llm = FakeLLM()
    yield llm
    llm.stop()


@pytest.fixture(scope="session")
def cluster(fake):
    settings = {"memory.llm_base_url": f"http://127.0.0.1:{fake.port}/v1", "memory.llm_model": "fake-model",
                "memory.llm_timeout": 3000, "memory.retry_backoff": 200, "memory.max_attempts": 2,
                "memory.worker_naptime": 50, "memory.user_id_roles": "app", "memory.llm_api_key": "sk-python-tests"}
    with support.llm_cluster("python", PORT, settings) as port:
        yield port


@pytest.fixture(autouse=True)
def fake_ok(fake):
    fake.mode, fake.delay = "ok", 0.0


@pytest.fixture(scope="module")
def db(cluster, request):
    """A fresh database with the extension, named after the test module; the `app` login may
    assert identities with memory.user_id."""
    name = "py_" + request.module.__name__.split(".")[-1]
    with psycopg.connect(support.dsn(port=cluster), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(support.dsn(name, port=cluster), autocommit=True) as c:
        c.execute("CREATE EXTENSION memory_ext CASCADE")
        c.execute(f"GRANT ALL ON DATABASE {name} TO PUBLIC")
    return name


def admin(db):
    return psycopg.connect(support.dsn(db, port=PORT), autocommit=True)


def new_user():
    return str(uuid.uuid4())


def claims(user_id):
    """A Supabase access token's claims, as PostgREST hands them to the database."""
    return {"sub": user_id, "role": "authenticated", "aud": "authenticated"}


wait_for = support.wait_for
