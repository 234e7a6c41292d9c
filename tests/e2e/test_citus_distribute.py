"""scripts/distribute.sh on an install that already holds users' conversations (Citus stage only):
it turns them into the distributed layout (sql/citus/) in one transaction on the coordinator, and
every user sees afterwards exactly what they saw before; a failed run leaves the install as it was,
a second run, a database without Citus or without workers, and another release are refused."""
import os
import re
import subprocess

import psycopg
import pytest
from psycopg import errors

from support.citus_layout import CARRY_THE_RULE, DISTRIBUTED
from support.pg import CITUS_WORKERS, PORT, ROOT, call_as, connect, dsn, new_user, set_node_secret

pytestmark = pytest.mark.skipif(not CITUS_WORKERS, reason="runs in the Citus stage, on its two workers")

SECRET = "a node secret for distributing an install, 32 characters"
AGENT = "00000000-0000-0000-0000-0000000000a1"
ALICE, BOB, MALLORY = (new_user() for _ in range(3))
WINDOW = "SELECT memory.build_context(%s, 1000)"
with open(os.path.join(ROOT, "Cargo.toml")) as _f:
    CURRENT = re.search(r'^version = "([^"]+)"', _f.read(), re.M).group(1)


def distribute(db):
    return subprocess.run([os.path.join(ROOT, "scripts/distribute.sh"), dsn(db)], capture_output=True, text=True)


def one(db, user, query, *args):
    return call_as(db, user, query, *args)[0][0]


def as_superuser(db, query, *args):
    with connect(db) as c:
        return c.execute(query, args).fetchall()


def policies(db):
    return as_superuser(db, "SELECT tablename, policyname FROM pg_policies WHERE schemaname = 'memory' ORDER BY 1, 2")


@pytest.fixture(scope="module")
def install(db):
    """ALICE's conversation before the layout: four messages, a summary, a share link, shared with
    BOB as a viewer; and what ALICE and BOB saw of it."""
    set_node_secret(SECRET, [PORT, *CITUS_WORKERS])
    cid = one(db, ALICE, "SELECT (memory.create_conversation(%s, 'before the layout')).id", AGENT)
    for i, role in enumerate(("user", "assistant", "user", "assistant"), 1):
        one(db, ALICE, "SELECT (memory.add_message(%s, %s, %s)).seq", cid, role, f"line {i} about lakes")
    call_as(db, ALICE, """INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model)
                          VALUES (%s, 2, 'lakes in short', 'by hand') RETURNING id""", cid)
    one(db, ALICE, "SELECT (memory.share_conversation(%s, %s, 'viewer')).role", cid, BOB)
    token = one(db, ALICE, "SELECT memory.create_share_link(%s)", cid)
    seen = {user: one(db, user, WINDOW, cid) for user in (ALICE, BOB)}
    seen["link"] = one(db, MALLORY, "SELECT memory.get_shared_conversation(%s)", token)
    yield db, cid, token, seen, policies(db)
    set_node_secret(None, [PORT, *CITUS_WORKERS])


def test_a_failed_run_leaves_the_install_as_it_was(install):
    """The coordinator's part is one transaction: a run stopped half-way (here by an index in the
    way of the layout's own) distributes nothing and keeps every policy; the next run succeeds."""
    db, cid, _, seen, before = install
    with connect(db) as c:
        c.execute("CREATE INDEX share_links_token_hash_idx ON memory.share_links (token_hash)")
    run = distribute(db)
    assert run.returncode != 0 and 'relation "share_links_token_hash_idx" already exists' in run.stderr
    assert as_superuser(db, "SELECT count(*) FROM pg_dist_partition") == [(0,)]
    assert policies(db) == before
    assert one(db, BOB, WINDOW, cid) == seen[BOB]
    with pytest.raises(errors.NoDataFound):
        call_as(db, MALLORY, WINDOW, cid)
    with connect(db) as c:
        c.execute("DROP INDEX memory.share_links_token_hash_idx")


def test_the_install_becomes_the_layout(install):
    db, cid, token, seen, _ = install
    run = distribute(db)
    assert run.returncode == 0, run.stderr
    assert sorted(t for (t,) in as_superuser(db, "SELECT logicalrelid::regclass::text FROM pg_dist_partition")) == \
        sorted(f"memory.{t}" for t in DISTRIBUTED)
    # the rows were copied to the shards and nothing of them is left in the coordinator's storage
    assert as_superuser(db, """SELECT p.logicalrelid::regclass::text FROM pg_dist_partition p
                                WHERE pg_relation_size(p.logicalrelid) > 0""") == []
    assert {(n,) for (n,) in as_superuser(db, """SELECT count(DISTINCT p.groupid) FROM pg_dist_shard s
                                                   JOIN pg_dist_placement p USING (shardid)
                                                  WHERE s.logicalrelid = 'memory.conversation_messages'::regclass""")} == \
        {(len(CITUS_WORKERS),)}
    # copied as they were: not numbered, counted or checked again by the triggers on the way
    assert as_superuser(db, "SELECT message_count, last_seq FROM memory.conversations WHERE id = %s", cid) == [(4, 4)]
    assert as_superuser(db, "SELECT array_agg(seq ORDER BY seq) FROM memory.conversation_messages WHERE conversation_id = %s",
                        cid) == [([1, 2, 3, 4],)]
    # every row that carries the rule names ALICE as owner and BOB as a reader
    for table in CARRY_THE_RULE:
        rules = as_superuser(db, f"SELECT DISTINCT owner::text, readers::text[], editors::text[] FROM memory.{table}")
        assert rules in ([], [(ALICE, [BOB], [])]), table
    assert as_superuser(db, "SELECT user_id::text, readers::text[] FROM memory.conversations") == [(ALICE, [BOB])]
    # the same windows and link as before, judged on the workers now
    assert one(db, ALICE, WINDOW, cid) == seen[ALICE]
    assert one(db, BOB, WINDOW, cid) == seen[BOB]
    assert one(db, MALLORY, "SELECT memory.get_shared_conversation(%s)", token) == seen["link"]
    assert one(db, MALLORY, "SELECT count(*) FROM memory.conversation_messages") == 0
    with pytest.raises(errors.NoDataFound):
        call_as(db, MALLORY, WINDOW, cid)
    with pytest.raises(errors.InsufficientPrivilege):
        call_as(db, BOB, "SELECT memory.add_message(%s, 'user', 'a viewer writes')", cid)
    assert one(db, ALICE, "SELECT (memory.add_message(%s, 'user', 'line 5 after the layout')).seq", cid) == 5
    assert one(db, BOB, "SELECT message_count FROM memory.conversations WHERE id = %s", cid) == 5
    # no NOTIFY of new messages on any node (a shard's cannot be committed in two phases)
    for port in (PORT, *CITUS_WORKERS):
        with psycopg.connect(dsn(db, port=port)) as c:
            assert c.execute("SHOW memory.notify_messages").fetchone() == ("off",), port


def test_a_second_run_is_refused(install):
    db, cid, _, _, _ = install
    layout = policies(db)
    run = distribute(db)
    assert run.returncode != 0 and "memory_ext is distributed already in this database" in run.stderr
    assert policies(db) == layout
    assert as_superuser(db, "SELECT message_count FROM memory.conversations WHERE id = %s", cid) == [(5,)]


@pytest.mark.parametrize("citus, version, error", [
    (False, None, "the distributed layout needs the citus extension in this database"),
    (True, None, "the distributed layout needs worker nodes: add them with citus_add_node first"),
    # the layout replaces functions of the release it is written for
    (True, "0.2.0", f"the distributed layout is written for memory_ext {CURRENT}; this database has 0.2.0")])
def test_a_database_without_citus_or_workers_or_at_another_release_is_refused(install, citus, version, error):
    db = install[0] + "_one_node"
    with connect("postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {db}")
    try:
        with connect(db) as c:
            if citus:
                c.execute("CREATE EXTENSION citus")
            c.execute("CREATE EXTENSION memory_ext " + (f"VERSION '{version}' " if version else "") + "CASCADE")
        before = policies(db)
        run = distribute(db)
        assert run.returncode != 0 and error in run.stderr
        assert policies(db) == before and before
    finally:
        with connect("postgres") as c:
            c.execute(f"DROP DATABASE {db} WITH (FORCE)")
