"""The analytics views under RLS: each caller sees the figures of what it may read (checked as
the owner, as another user, as a member, with no identity and as an operator), and the figures
are right (compared with counts taken directly from the tables)."""
import json

import psycopg
import pytest

from support.pg import as_guc_user, as_jwt_user, connect, new_user, rpc

AGENT = "a0000000-0000-0000-0000-0000000a11a1"


def call(i, name="weather"):
    return [{"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": "{}"}}]


@pytest.fixture(scope="module")
def data(db):
    alice, bob, carol = new_user(), new_user(), new_user()
    with as_guc_user(db, alice) as c:
        a = str(rpc(c, "SELECT (memory.create_conversation(%s, 'alice')).id", AGENT))
        c.execute("SELECT memory.add_message(%s, 'user', 'weather?')", (a,))
        c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (a, json.dumps(call(1))))
        c.execute("SELECT memory.add_message(%s, 'tool', 'sunny', tool_call_id => 'c1')", (a,))
        c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (a, json.dumps(call(2))))   # never answered
        c.execute("SELECT memory.add_message(%s, 'assistant', 'booked', %s)", (a, json.dumps(
            [{"id": "g1", "tool": "book_train", "input": {"to": "Lyon"}, "output": "ok"}])))
        c.execute("SELECT memory.share_conversation(%s, %s, 'viewer')", (a, carol))
    with as_guc_user(db, bob) as c:
        b = str(rpc(c, "SELECT (memory.create_conversation(%s, 'bob')).id", AGENT))
        for i in range(3):
            c.execute("SELECT memory.add_message(%s, 'user', %s)", (b, f"hello {i}"))
        c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (b, json.dumps(call(9, "search"))))
    with connect(db) as su:
        for uid, latency, status, tokens in [(alice, 100, "ok", 50), (alice, 300, "ok", 70), (alice, 900, "error", None),
                                             (bob, 50, "ok", 10)]:
            su.execute("""INSERT INTO memory.llm_calls (user_id, agent_id, kind, model, prompt_tokens, completion_tokens,
                                                        latency_ms, status)
                          VALUES (%s, %s, 'chat', 'gpt-4o', 100, %s, %s, %s)""", (uid, AGENT, tokens, latency, status))
    return {"alice": alice, "bob": bob, "carol": carol, "a": a, "b": b}


def totals(c):
    return c.execute("""SELECT coalesce(sum(messages), 0), coalesce(sum(stored_tokens), 0), coalesce(sum(tool_calls), 0),
                               coalesce(sum(llm_calls), 0), coalesce(sum(completion_tokens), 0)
                          FROM memory.usage_daily""").fetchone()


@pytest.mark.parametrize("mode", [as_guc_user, as_jwt_user], ids=["login", "postgrest"])
def test_each_caller_sees_what_it_may_read(db, data, mode):
    with connect(db) as su:
        a_tokens = su.execute("SELECT sum(token_count) FROM memory.conversation_messages WHERE conversation_id = %s",
                              (data["a"],)).fetchone()[0]
    with mode(db, data["alice"]) as c:
        assert totals(c) == (5, a_tokens, 3, 3, 120)
        assert dict((r[0], r[1:]) for r in c.execute("SELECT tool, calls, results, without_result FROM memory.tool_usage")) == {
            "weather": (2, 1, 1), "book_train": (1, 1, 0)}
        rows = c.execute("SELECT conversation_id::text, messages, tokens FROM memory.conversation_activity").fetchall()
        assert rows == [(data["a"], 5, a_tokens)]
        perf = c.execute("""SELECT llm_calls, failures, latency_p50_ms, latency_p95_ms, tokens_per_reply
                              FROM memory.agent_performance""").fetchall()
        assert perf == [(3, 1, 300.0, pytest.approx(840.0), 60.0)]
    with mode(db, data["bob"]) as c:
        t = totals(c)
        assert t[0] == 4 and t[2:4] == (1, 1)
        assert [r[0] for r in c.execute("SELECT tool FROM memory.tool_usage")] == ["search"]
        assert [r[0] for r in c.execute("SELECT conversation_id::text FROM memory.conversation_activity")] == [data["b"]]
    # a viewer sees the shared conversation's figures (not the owner's LLM calls)
    with mode(db, data["carol"]) as c:
        assert totals(c) == (5, a_tokens, 3, 0, 0)
        assert c.execute("SELECT count(*) FROM memory.agent_performance").fetchone()[0] == 0
    # nobody (PostgREST's anon role, or a login without identity): nothing
    with (as_jwt_user(db, None, role="anon") if mode is as_jwt_user else connect(db, "app")) as c:
        assert totals(c) == (0, 0, 0, 0, 0)
        for view in ("tool_usage", "conversation_activity", "agent_performance", "conversation_costs"):
            assert c.execute(f"SELECT count(*) FROM memory.{view}").fetchone()[0] == 0


def test_an_operator_sees_everyone(db, data):
    with connect(db) as su:
        messages, tokens = su.execute("SELECT count(*), sum(token_count) FROM memory.conversation_messages").fetchone()
        assert totals(su)[:2] == (messages, tokens)
        assert su.execute("SELECT count(DISTINCT user_id) FROM memory.usage_daily").fetchone()[0] == 2
        assert su.execute("SELECT sum(llm_calls) FROM memory.agent_performance").fetchone()[0] == 4


TRUTH = """SELECT m.conversation_id::text, (m.created_at AT TIME ZONE 'UTC')::date, m.author_id::text, count(*),
                  sum(m.token_count)::bigint, sum(memory._tool_call_count(m.tool_calls))::bigint, max(m.created_at)
             FROM memory.conversation_messages m GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
KEPT = """SELECT conversation_id::text, day, author_id::text, messages, tokens, tool_calls, last_activity
            FROM memory.message_days ORDER BY 1, 2, 3"""


ROLLED = """SELECT conversation_id::text, day, author_id::text, messages, tokens, tool_calls, last_activity
              FROM memory.message_days_rollup ORDER BY 1, 2, 3"""
BEHIND = """SELECT count(*) FROM memory.conversations c LEFT JOIN memory.message_days_marks k ON k.conversation_id = c.id
             WHERE c.last_seq > coalesce(k.through_seq, 0)"""


def assert_days_match(db):
    """memory.message_days holds exactly what aggregating the stored messages gives: before the
    worker's rollup (the newest messages added up on read) and after it (the rollup alone)."""
    with connect(db) as su:
        truth = su.execute(TRUTH).fetchall()
        assert su.execute(KEPT).fetchall() == truth
        su.execute("SELECT memory._roll_up_message_days(1000)")
        assert su.execute(BEHIND).fetchone()[0] == 0
        assert su.execute(ROLLED).fetchall() == truth
        assert su.execute(KEPT).fetchall() == truth


def test_the_daily_figures_follow_every_write(db):
    """message_days (what usage_daily and conversation_activity read) equals the messages counted
    on read after every kind of write: single and bulk appends, imports over several days, an
    idempotent retry and an ON CONFLICT skip, a rolled-back savepoint, a rewind, a deleted tool call (its result goes
    too), a fork, another user's messages, erasure, and a deleted conversation."""
    owner, editor = new_user(), new_user()
    days = [{"role": "user", "content": f"day {d} question", "created_at": f"2026-03-0{d}T23:59:59Z"} for d in range(1, 4)]
    with as_guc_user(db, owner) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s, 'days')).id", AGENT))
        c.execute("SELECT memory.add_message(%s, 'user', 'hello', idempotency_key => 'k1')", (cid,))
        c.execute("SELECT memory.add_message(%s, 'user', 'hello', idempotency_key => 'k1')", (cid,))   # a retry: no new row
        # a bulk insert with an idempotent retry in it and a clash ON CONFLICT skips
        first = rpc(c, "SELECT id FROM memory.conversation_messages WHERE conversation_id = %s", cid)
        c.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content, tool_calls, tool_call_id, idempotency_key)
                     VALUES (%s, 'user', 'hello', NULL, NULL, 'k1'), (%s, 'assistant', '', %s, NULL, NULL),
                            (%s, 'tool', 'rain', NULL, 'c5', NULL), (%s, 'assistant', 'rain today', NULL, NULL, NULL)""",
                  (cid, cid, json.dumps(call(5)), cid, cid))
        c.execute("""INSERT INTO memory.conversation_messages (id, conversation_id, role, content)
                     VALUES (%s, %s, 'user', 'a clash') ON CONFLICT (id) DO NOTHING""", (first, cid))
        with c.transaction():
            with pytest.raises(RuntimeError):
                with c.transaction():
                    c.execute("SELECT memory.add_message(%s, 'user', 'undone')", (cid,))
                    raise RuntimeError("roll back the savepoint")
        imported = str(rpc(c, "SELECT memory.import_conversation(%s)", json.dumps(days)))
        c.execute("SELECT memory.share_conversation(%s, %s, 'editor')", (cid, editor))
    assert_days_match(db)
    with as_guc_user(db, editor) as c:
        c.execute("SELECT memory.add_message(%s, 'user', 'an editor writes')", (cid,))
    with as_guc_user(db, owner) as c:
        assert rpc(c, "SELECT count(*) FROM memory.message_days WHERE conversation_id = %s", cid) == 2   # owner's and editor's
        assert rpc(c, "SELECT sum(messages) FROM memory.message_days WHERE conversation_id = %s", cid) == 5
        assert rpc(c, "SELECT sum(messages) FROM memory.message_days WHERE conversation_id = %s", imported) == 3
        forked = str(rpc(c, "SELECT memory.fork_conversation(%s, 3)", cid))
        assert_days_match(db)
        c.execute("DELETE FROM memory.conversation_messages WHERE conversation_id = %s AND seq = 2", (cid,))  # the call and its result
        assert rpc(c, "SELECT tool_calls FROM memory.message_days WHERE conversation_id = %s AND author_id = %s", cid, owner) == 0
        c.execute("SELECT memory.rewind_conversation(%s, 1)", (imported,))
        assert rpc(c, "SELECT last_activity FROM memory.message_days WHERE conversation_id = %s", imported).isoformat() \
            == "2026-03-01T23:59:59+00:00"
        assert_days_match(db)
        c.execute("DELETE FROM memory.conversations WHERE id = %s", (forked,))
    assert_days_match(db)
    with connect(db) as su:
        su.execute("SELECT memory.erase_user(%s)", (editor,))
        assert_days_match(db)
        assert su.execute("SELECT count(*) FROM memory.message_days WHERE author_id = %s", (editor,)).fetchone()[0] == 0


@pytest.mark.parametrize("mode", [as_guc_user, as_jwt_user], ids=["login", "postgrest"])
def test_the_daily_figures_are_read_only_and_private(db, data, mode):
    """Users read the daily figures of what they may read, and cannot write them."""
    with mode(db, data["bob"]) as c:
        assert [r[0] for r in c.execute("SELECT DISTINCT conversation_id::text FROM memory.message_days")] == [data["b"]]
        assert [r[0] for r in c.execute("SELECT DISTINCT user_id::text FROM memory.llm_call_days")] == [data["bob"]]
        with pytest.raises(psycopg.errors.InsufficientPrivilege), c.transaction():
            c.execute("UPDATE memory.llm_call_days SET calls = 0")
        for sql in ("INSERT INTO memory.message_days_rollup VALUES (%s, current_date, NULL, 1000, 1000, 0, now())",
                    "UPDATE memory.message_days_rollup SET messages = 0 WHERE conversation_id = %s",
                    "DELETE FROM memory.message_days_rollup WHERE conversation_id = %s",
                    "INSERT INTO memory.message_days_marks VALUES (%s, 1000)",
                    "UPDATE memory.message_days_marks SET through_seq = 0 WHERE conversation_id = %s",
                    "DELETE FROM memory.message_days_marks WHERE conversation_id = %s",
                    "SELECT memory._roll_up_message_days(10) WHERE %s::uuid IS NOT NULL"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), c.transaction():
                c.execute(sql, (data["b"],))
        # the view adds them up: not a table anyone writes
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState), c.transaction():
            c.execute("DELETE FROM memory.message_days WHERE conversation_id = %s", (data["b"],))
    assert_days_match(db)


CALLS_TRUTH = """SELECT user_id::text, (created_at AT TIME ZONE 'UTC')::date, agent_id::text, model, conversation_id::text,
                        count(*), coalesce(sum(prompt_tokens), 0)::bigint, coalesce(sum(completion_tokens), 0)::bigint,
                        count(cost_usd), coalesce(sum(cost_usd), 0)
                   FROM memory.llm_calls GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"""
CALLS_KEPT = """SELECT user_id::text, day, agent_id::text, model, conversation_id::text, calls, prompt_tokens, completion_tokens,
                       priced_calls, cost_usd
                  FROM memory.llm_call_days ORDER BY 1, 2, 3, 4, 5"""


def test_the_calls_daily_figures_follow_every_write(db):
    """llm_call_days (what usage_daily's LLM figures and conversation_costs read) equals the calls
    counted on read after inserts, the worker's completion of a pending call (tokens, then a
    price), a call's model changing, its conversation deleted by its owner (the calls stay, without it) and
    its user erased."""
    user = new_user()
    with as_guc_user(db, user) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s, 'calls')).id", AGENT))
    with connect(db) as su:
        su.execute("INSERT INTO memory.model_prices (model, input_usd_per_million, output_usd_per_million) "
                   "VALUES ('days-model', 2, 8) ON CONFLICT DO NOTHING")
        ids = [su.execute("""INSERT INTO memory.llm_calls (conversation_id, user_id, agent_id, kind, model, local_prompt_tokens, status,
                                                            created_at)
                             VALUES (%s, %s, %s, 'reply', %s, 40, 'pending', %s) RETURNING id""",
                          (cid, user, AGENT, model, at)).fetchone()[0]
               for model, at in [("days-model", "2026-04-01T10:00Z"), ("days-model", "2026-04-01T11:00Z"),
                                 ("unpriced-model", "2026-04-02T10:00Z")]]
        assert su.execute(CALLS_KEPT).fetchall() == su.execute(CALLS_TRUTH).fetchall()
        su.execute("UPDATE memory.llm_calls SET status = 'ok', prompt_tokens = 50, completion_tokens = 7, total_tokens = 57 "
                   "WHERE id = %s", (ids[0],))
        su.execute("UPDATE memory.llm_calls SET model = 'days-model' WHERE id = %s", (ids[2],))
        rows = su.execute("SELECT calls, priced_calls FROM memory.llm_call_days WHERE user_id = %s ORDER BY day", (user,)).fetchall()
        assert rows == [(2, 2), (1, 1)]
        assert su.execute(CALLS_KEPT).fetchall() == su.execute(CALLS_TRUTH).fetchall()
    with as_guc_user(db, user) as c:  # by its owner, an ordinary login: the rollup is written for them
        assert rpc(c, "SELECT memory.delete_conversation(%s)", cid) is True
    with connect(db) as su:
        assert su.execute("SELECT count(*) FROM memory.llm_call_days WHERE conversation_id = %s", (cid,)).fetchone()[0] == 0
        assert su.execute(CALLS_KEPT).fetchall() == su.execute(CALLS_TRUTH).fetchall()
        su.execute("SELECT memory.erase_user(%s)", (user,))
        assert su.execute("SELECT count(*) FROM memory.llm_call_days WHERE user_id = %s", (user,)).fetchone()[0] == 0
        assert su.execute(CALLS_KEPT).fetchall() == su.execute(CALLS_TRUTH).fetchall()
