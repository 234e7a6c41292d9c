"""The background worker on the distributed layout (Citus stage only): a coordinator whose worker
calls the fake LLM, two Citus workers of this module's own, and conversations, messages, members
and summaries distributed with the rule on the rows (sql/citus/). The worker
runs on the coordinator and claims its jobs there; what it writes — a summary, an agent's
reply — lands on the conversation's shard with the conversation's rule, and users read it there
under that rule. Users call as an application server does: one transaction per call, the caller
passed (memory.pass_caller)."""
import contextlib
import uuid

import pytest
from psycopg import errors

from support.citus_layout import DISTRIBUTED, NOTHING_LEFT, ROUTE_BY_CONVERSATION, RULE_ON_ROWS, apply, hang_on_the_coordinator, left_on_the_coordinator
from support.pg import CITUS_WORKERS, TEST_ROOT, admin_on, app_on, call_passing_the_caller, cluster_sh, llm_cluster, start_new_cluster, wait_for

pytestmark = pytest.mark.skipif(not CITUS_WORKERS, reason="runs in the Citus stage, with Citus workers of its own")

SECRET = "a node secret for the layout of the worker, 32 characters"
# the settings every node shares: the secret the caller is signed with, two-phase commit, and no
# NOTIFY from the shards (a shard's NOTIFY cannot be part of a two-phase commit, docs/scaling.md)
NODE_SETTINGS = {"memory.node_secret": SECRET, "max_prepared_transactions": 16, "memory.notify_messages": "off"}
ALICE, BOB, MALLORY = (str(uuid.uuid4()) for _ in range(3))


@contextlib.contextmanager
def citus_workers(name, ports):
    """Two clusters (Citus preloaded, as the stage does) with the citus extension in database
    postgres and the shared settings, stopped on exit."""
    roots = [f"{TEST_ROOT}/{name}{i}" for i in range(len(ports))]
    try:
        for root, port in zip(roots, ports):
            start_new_cluster(root, port, lambda c: c.execute("CREATE EXTENSION citus"), NODE_SETTINGS)
        yield ports
    finally:
        for root in roots:
            cluster_sh("stop", root)


@pytest.fixture(scope="module")
def pg(cluster, llm):
    """The coordinator's port: its worker summarizes and replies; the layout applied."""
    settings = {"memory.llm_base_url": f"http://127.0.0.1:{llm.port}/v1", "memory.llm_model": "fake-model",
                "memory.llm_timeout": 1500, "memory.retry_backoff": 200, "memory.max_attempts": 2,
                "memory.worker_naptime": 50, "memory.user_id_roles": "app", "memory.llm_api_key": "sk-layout-test",
                # summaries only when asked for: a test requests one after its last message
                "memory.summarize_threshold": 1000000, "memory.summary_keep_tokens": 20, **NODE_SETTINGS}
    with citus_workers("citus_worker_node", [cluster + 9, cluster + 17]) as workers:
        with llm_cluster("citus_worker", cluster + 8, settings) as port:
            with admin_on(port) as c:
                c.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (port,))
                for worker in workers:
                    c.execute("SELECT citus_add_node('127.0.0.1', %s)", (worker,))
                assert c.execute("SELECT count(*) FROM citus_get_active_worker_nodes()").fetchone()[0] == 2
                apply(c, ROUTE_BY_CONVERSATION, RULE_ON_ROWS)
            yield port


@pytest.fixture(autouse=True)
def fake_ok(llm):
    llm.mode, llm.delay = "ok", 0.0
    yield


def call(port, user, query, *args):
    """One call as `user` through the application login, in its own transaction with the caller
    passed; all its rows."""
    with app_on(port, user) as c:
        return call_passing_the_caller(c, query, *args)


def one(port, user, query, *args):
    return call(port, user, query, *args)[0][0]


def superuser_rows(port, query, *args):
    with admin_on(port) as c:
        return c.execute(query, args).fetchall()


def shard_node(port, table, cid):
    """The worker port holding `cid`'s placement of `table`."""
    return superuser_rows(port, """SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
                                    WHERE p.shardid = get_shard_id_for_distribution_column(%s::regclass, %s::uuid)""",
                          table, cid)[0][0]


@pytest.fixture(scope="module")
def talk(pg):
    """ALICE's conversation with an agent, six messages long, shared with BOB as a viewer."""
    agent = one(pg, ALICE, "SELECT (memory.create_agent('helper', 'You are helpful.')).id")
    cid = one(pg, ALICE, "SELECT (memory.create_conversation(%s, 'a long talk')).id", agent)
    for i in range(6):
        one(pg, ALICE, "SELECT (memory.add_message(%s, %s, %s)).seq", cid, ("user", "assistant")[i % 2],
            f"message {i}: " + "rivers and their deltas " * 8)
    one(pg, ALICE, "SELECT (memory.share_conversation(%s, %s, 'viewer')).role", cid, BOB)
    return cid


def test_the_worker_writes_a_summary_onto_the_conversations_shard(pg, llm, talk):
    job = one(pg, ALICE, "SELECT memory.request_summary(%s)", talk)
    wait_for(lambda: superuser_rows(pg, "SELECT status FROM memory.jobs WHERE id = %s", job)[0][0] in ("done", "failed"))
    assert superuser_rows(pg, "SELECT status, last_error FROM memory.jobs WHERE id = %s", job) == [("done", None)]
    (owner, readers, editors, covers, model, content), = superuser_rows(
        pg, """SELECT owner, readers, editors, covers_through_seq, model, content FROM memory.conversation_summaries
                WHERE conversation_id = %s""", talk)
    assert (str(owner), [str(r) for r in readers], editors, model) == (ALICE, [BOB], [], "fake-model")
    assert 1 <= covers < 6
    # stored on the worker that holds the conversation, not on the coordinator
    node = shard_node(pg, "memory.conversation_summaries", talk)
    assert node != pg and node == shard_node(pg, "memory.conversations", talk)
    # its owner and its viewer get it in their windows (the viewer without the agent's prompt, which
    # its owner does not share), a stranger neither it nor the window
    for user, prompt in ((ALICE, ["You are helpful."]), (BOB, [])):
        window = one(pg, user, "SELECT memory.build_context(%s, 150)", talk)
        assert window["summary_included"] is True, window
        system = [m["content"] for m in window["messages"] if m["role"] == "system"]
        assert system == prompt + ["Summary of the earlier conversation: " + content]
        assert one(pg, user, "SELECT (memory.summary_status(%s))->'summary'->>'covers_through_seq'", talk) == str(covers)
    assert one(pg, MALLORY, "SELECT count(*) FROM memory.conversation_summaries") == 0
    with pytest.raises(errors.NoDataFound):
        call(pg, MALLORY, "SELECT memory.build_context(%s, 60)", talk)


def test_the_worker_appends_an_agents_reply_under_the_rule(pg, llm, talk):
    before = one(pg, ALICE, "SELECT last_seq FROM memory.conversations WHERE id = %s", talk)
    one(pg, ALICE, "SELECT (memory.add_message(%s, 'user', 'What about the Nile?')).seq", talk)
    job = one(pg, ALICE, "SELECT memory.request_reply(%s)", talk)
    wait_for(lambda: superuser_rows(pg, "SELECT status FROM memory.jobs WHERE id = %s", job)[0][0] in ("done", "failed"))
    assert superuser_rows(pg, "SELECT status, last_error FROM memory.jobs WHERE id = %s", job) == [("done", None)]
    rows = call(pg, BOB, """SELECT seq, role, content FROM memory.conversation_messages
                             WHERE conversation_id = %s AND seq > %s ORDER BY seq""", talk, before)
    assert rows == [(before + 1, "user", "What about the Nile?"), (before + 2, "assistant", "You said: What about the Nile?")]
    assert superuser_rows(pg, """SELECT owner::text, readers::text[] FROM memory.conversation_messages
                                  WHERE conversation_id = %s AND seq = %s""", talk, before + 2) == [(ALICE, [BOB])]
    # the counters the trigger keeps on the shard moved with it
    assert call(pg, ALICE, "SELECT message_count, last_seq FROM memory.conversations WHERE id = %s", talk) == \
        [(before + 2, before + 2)]
    assert one(pg, MALLORY, "SELECT count(*) FROM memory.conversation_messages") == 0


def test_a_stranger_cannot_queue_work_on_someone_elses_conversation(pg, talk):
    jobs = superuser_rows(pg, "SELECT count(*) FROM memory.jobs")[0][0]
    with pytest.raises(errors.NoDataFound):
        call(pg, MALLORY, "SELECT memory.request_summary(%s)", talk)
    with pytest.raises(errors.NoDataFound):
        call(pg, MALLORY, "SELECT memory.request_reply(%s)", talk)
    # a viewer may read but not make the agent write
    with pytest.raises(errors.InsufficientPrivilege):
        call(pg, BOB, "SELECT memory.request_reply(%s)", talk)
    assert superuser_rows(pg, "SELECT count(*) FROM memory.jobs")[0][0] == jobs


def test_a_synchronous_chat_turn_under_the_rule(pg, llm, talk):
    """memory.chat in the caller's own transaction: the user's message and the agent's answer are
    appended on the conversation's shard, the call recorded on the coordinator."""
    before = one(pg, ALICE, "SELECT last_seq FROM memory.conversations WHERE id = %s", talk)
    turn = one(pg, ALICE, "SELECT memory.chat(%s, 'And the Amazon?')", talk)
    assert (turn["message"]["role"], turn["message"]["content"]) == ("assistant", "You said: And the Amazon?")
    assert call(pg, BOB, """SELECT seq, role, content, author_id::text FROM memory.conversation_messages
                             WHERE conversation_id = %s AND seq > %s ORDER BY seq""", talk, before) == \
        [(before + 1, "user", "And the Amazon?", ALICE), (before + 2, "assistant", "You said: And the Amazon?", ALICE)]
    assert one(pg, ALICE, "SELECT count(*) FROM memory.llm_calls WHERE conversation_id = %s AND kind = 'chat'", talk) == 1
    # a viewer's turn is refused and writes nothing
    with pytest.raises(errors.InsufficientPrivilege):
        call(pg, BOB, "SELECT memory.chat(%s, 'my turn')", talk)
    assert one(pg, ALICE, "SELECT last_seq FROM memory.conversations WHERE id = %s", talk) == before + 2


def test_the_workers_rollup_counts_the_days_on_the_shards(pg, talk):
    """The worker's rollup of the daily figures, a conversation at a time on the layout: the marks
    catch up with the conversation, the figures land beside it with its rule, and the view a
    dashboard reads equals the stored messages."""
    last = one(pg, ALICE, "SELECT last_seq FROM memory.conversations WHERE id = %s", talk)
    wait_for(lambda: superuser_rows(pg, "SELECT through_seq FROM memory.message_days_marks WHERE conversation_id = %s",
                                    talk) == [(last,)])
    rolled = superuser_rows(pg, """SELECT sum(messages), min(owner::text), min(readers::text) FROM memory.message_days_rollup
                                    WHERE conversation_id = %s""", talk)
    assert rolled == [(last, ALICE, "{" + BOB + "}")]
    truth = superuser_rows(pg, """SELECT (created_at AT TIME ZONE 'UTC')::date, author_id::text, count(*), sum(token_count)::bigint
                                   FROM memory.conversation_messages WHERE conversation_id = %s GROUP BY 1, 2 ORDER BY 1, 2""",
                           talk)
    kept = """SELECT day, author_id::text, messages, tokens FROM memory.message_days WHERE conversation_id = %s ORDER BY 1, 2"""
    assert call(pg, BOB, kept, talk) == truth
    assert call(pg, MALLORY, kept, talk) == []


def test_retention_deletes_what_is_due_from_the_shards_and_the_coordinator(pg):
    """memory.retention_days on the layout: the worker's retention job deletes the conversations not
    updated for that long from their shards, a conversation at a time (Citus locks rows only in a
    query routed to one shard), with the coordinator's rows about them; a younger one is kept."""
    old = [one(pg, ALICE, "SELECT (memory.create_conversation(gen_random_uuid(), %s)).id", f"old {i}") for i in range(3)]
    young = one(pg, ALICE, "SELECT (memory.create_conversation(gen_random_uuid(), 'young')).id")
    for cid in (*old, young):
        one(pg, ALICE, "SELECT (memory.add_message(%s, 'user', 'hello')).seq", cid)
    with admin_on(pg) as su:
        for cid in (old[0], young):
            hang_on_the_coordinator(su, cid, BOB)
        # back-dated with no trigger (the update trigger would stamp now()), on the workers too
        with su.transaction():
            su.execute("SET LOCAL citus.propagate_set_commands = 'local'")
            su.execute("SET LOCAL session_replication_role = replica")
            su.execute("UPDATE memory.conversations SET updated_at = now() - interval '40 days' WHERE id = ANY (%s)", (old,))
        assert {r[0] for r in su.execute("SELECT conversation_id FROM memory.retention_preview(30) WHERE user_id = %s",
                                         (ALICE,))} == set(old)
    try:
        with admin_on(pg) as su:
            for k, v in (("memory.retention_days", 30), ("memory.retention_batch", 2), ("memory.retention_interval", 1)):
                su.execute(f"ALTER SYSTEM SET {k} = {v}")
            su.execute("SELECT pg_reload_conf()")
        wait_for(lambda: superuser_rows(pg, "SELECT count(*) FROM memory.conversations WHERE id = ANY (%s)", old) == [(0,)],
                 timeout=30)
    finally:
        with admin_on(pg) as su:
            for k in ("memory.retention_days", "memory.retention_batch", "memory.retention_interval"):
                su.execute(f"ALTER SYSTEM RESET {k}")
            su.execute("SELECT pg_reload_conf()")
    for table in DISTRIBUTED:
        column = "id" if table == "conversations" else "conversation_id"
        assert superuser_rows(pg, f"SELECT count(*) FROM memory.{table} WHERE {column} = ANY (%s)", old) == [(0,)], table
    with admin_on(pg) as su:
        assert left_on_the_coordinator(su, old[0]) == NOTHING_LEFT
        assert left_on_the_coordinator(su, young) == {t: 1 for t in NOTHING_LEFT}
        assert su.execute("SELECT count(*) FROM memory.facts WHERE user_id = %s AND content = 'likes rivers'",
                          (BOB,)).fetchone()[0] == 2
        # retention jobs done (more may be queued), none failed or retried
        jobs = su.execute("SELECT status, attempts, last_error FROM memory.jobs WHERE kind = 'retention'").fetchall()
        assert ("done", 0, "retention batch done") in jobs, jobs
        assert all(status != "failed" and attempts == 0 for status, attempts, _ in jobs), jobs
    assert one(pg, ALICE, "SELECT message_count FROM memory.conversations WHERE id = %s", young) == 1
