"""Attacks by an ordinary SQL login (and through PostgREST as `authenticated`): each test is one
way in that an attacker could try, and shows that it is closed. The attacks that concern the
worker (failing jobs, the offline summarizer's cost, fair scheduling, bounded prompts) are in
test_worker.py; bulk routes and sizes in test_attacks_bulk.py and test_attacks_sizes.py."""
import datetime
import json
import time
import uuid

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from support.pg import as_guc_user, as_jwt_user, connect, dsn, new_user, rpc

AGENT = str(uuid.uuid4())
CALL = '[{{"id":"{}","type":"function","function":{{"name":"f","arguments":"{{}}"}}}}]'


def victim_conversation(db):
    """A conversation of a fresh victim, written through PostgREST: returns (user, conversation)."""
    victim = new_user()
    with as_jwt_user(db, victim) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s, 'victim')).id", AGENT)
        c.execute("SELECT memory.add_message(%s, 'user', 'the victim''s secret')", (cid,))
        c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (cid, CALL.format("v1")))
        c.execute("SELECT memory.add_message(%s, 'tool', 'result', tool_call_id => 'v1')", (cid,))
    return victim, cid


def message_count(db, cid):
    with connect(db) as c:
        return rpc(c, "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", cid)


# 1. Impersonation ---------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["set_config", "set", "claim_sub", "pgoptions", "user_id"])
def test_a_plain_login_cannot_assert_someone_elses_identity(db, how):
    victim, cid = victim_conversation(db)
    claims = json.dumps({"sub": victim, "role": "authenticated"}, separators=(",", ":"))
    opts = {}
    if how == "pgoptions":
        opts["options"] = "-c request.jwt.claims=" + claims.replace(" ", "\\ ")
    with psycopg.connect(dsn(db, "enduser"), autocommit=True, **opts) as c:
        if how == "set_config":
            c.execute("SELECT set_config('request.jwt.claims', %s, false)", (claims,))
        elif how == "set":
            c.execute(f"SET request.jwt.claims = '{claims}'")
        elif how == "claim_sub":
            c.execute("SELECT set_config('request.jwt.claim.sub', %s, false)", (victim,))
        elif how == "user_id":
            c.execute("SELECT set_config('memory.user_id', %s, false)", (victim,))
        assert rpc(c, "SELECT memory.current_user_id()") is None
        assert rpc(c, "SELECT count(*) FROM memory.conversation_messages") == 0
        with pytest.raises(errors.NoDataFound):
            c.execute("SELECT memory.add_message(%s, 'user', 'injected')", (cid,))
    assert message_count(db, cid) == 3


def test_a_login_bound_to_an_identity_cannot_override_it(db):
    victim, cid = victim_conversation(db)
    own = new_user()
    with connect(db) as c:
        c.execute(f"ALTER ROLE enduser IN DATABASE {db} SET memory.login_user_id = '{own}'")
    try:
        with connect(db, "enduser") as c:
            assert str(rpc(c, "SELECT memory.current_user_id()")) == own
            c.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": victim}),))
            c.execute("SELECT set_config('memory.user_id', %s, false)", (victim,))
            assert str(rpc(c, "SELECT memory.current_user_id()")) == own
            with pytest.raises(errors.InsufficientPrivilege):
                c.execute(f"SET memory.login_user_id = '{victim}'")
            # it works as that identity, and only as it
            mine = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
            assert rpc(c, "SELECT count(*) FROM memory.conversations") == 1
            assert rpc(c, "SELECT user_id FROM memory.conversations WHERE id = %s", mine) == uuid.UUID(own)
    finally:
        with connect(db) as c:
            c.execute(f"ALTER ROLE enduser IN DATABASE {db} RESET memory.login_user_id")


def test_only_gateway_and_pooled_logins_may_assert_and_only_superusers_say_which(db):
    victim, cid = victim_conversation(db)
    # PostgREST's login: claims count
    with as_jwt_user(db, victim) as c:
        assert rpc(c, "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", cid) == 3
    # the application server's pooled login (memory.user_id_roles = 'app'): the setting counts
    with as_guc_user(db, victim) as c:
        assert rpc(c, "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", cid) == 3
        # but not its claims: it is no gateway
        c.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": new_user()}),))
        assert str(rpc(c, "SELECT memory.current_user_id()")) == victim
    for setting in ("memory.jwt_gateway_roles", "memory.user_id_roles", "memory.trust_user_id_setting"):
        with connect(db, "enduser") as c:
            with pytest.raises(errors.InsufficientPrivilege):
                c.execute(f"SET {setting} = 'enduser'" if "roles" in setting else f"SET {setting} = on")


# 2. search_path hijacking -------------------------------------------------------------------

def test_an_attackers_functions_never_run_inside_memory_ext(db):
    """Where ordinary logins can create objects in a schema on everyone's search_path (public in
    databases made before PostgreSQL 15), an aggregate and an operator that beat the built-ins on
    type match must never be called by memory_ext: not for a user adding tool messages, not for
    the superuser during REINDEX and ANALYZE."""
    with connect(db) as c:
        c.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        c.execute("CREATE TABLE IF NOT EXISTS public.pwned (who text, at timestamptz DEFAULT now())")
        c.execute("GRANT INSERT, SELECT ON public.pwned TO PUBLIC")
    try:
        with connect(db, "enduser") as c:
            c.execute("""CREATE FUNCTION public.evil_sfunc(text[], text) RETURNS text[] LANGUAGE plpgsql AS $$
                         BEGIN INSERT INTO public.pwned (who) VALUES (current_user); RETURN $1 || $2; END $$""")
            c.execute("CREATE AGGREGATE public.array_agg(text) (sfunc = public.evil_sfunc, stype = text[])")
            c.execute("""CREATE FUNCTION public.evil_cat(text[], text[]) RETURNS text[] LANGUAGE plpgsql AS $$
                         BEGIN INSERT INTO public.pwned (who) VALUES (current_user); RETURN array_cat($1, $2); END $$""")
            c.execute("CREATE OPERATOR public.|| (leftarg = text[], rightarg = text[], function = public.evil_cat)")
        victim = new_user()
        with as_guc_user(db, victim) as c:
            cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
            c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (cid, CALL.format("h1")))
            c.execute("SELECT memory.add_message(%s, 'tool', 'r', tool_call_id => 'h1')", (cid,))
            c.execute("DELETE FROM memory.conversation_messages WHERE conversation_id = %s AND seq = 1", (cid,))
            rpc(c, "SELECT memory.build_context(%s)", cid)
            rpc(c, "SELECT memory.summary_status(%s)", cid)
        with connect(db) as c:
            c.execute("SET search_path = public, pg_catalog")
            c.execute("REINDEX TABLE memory.conversation_messages")
            c.execute("ANALYZE memory.conversation_messages")
            assert rpc(c, "SELECT count(*) FROM public.pwned") == 0
            assert rpc(c, "SELECT rolsuper FROM pg_roles WHERE rolname = 'enduser'") is False
    finally:
        with connect(db) as c:
            c.execute("DROP OPERATOR IF EXISTS public.|| (text[], text[])")
            c.execute("DROP AGGREGATE IF EXISTS public.array_agg(text)")
            c.execute("DROP FUNCTION IF EXISTS public.evil_sfunc(text[], text), public.evil_cat(text[], text[])")
            c.execute("DROP TABLE IF EXISTS public.pwned")
            c.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")


# 3. Forgeable visibility proof ---------------------------------------------------------------

@pytest.mark.parametrize("mode", [as_guc_user, as_jwt_user], ids=["login", "postgrest"])
def test_definer_helpers_reveal_and_change_nothing_of_others(db, mode):
    """Even knowing the victim's conversation id and its exact created_at (what 0.1.0 took as
    proof), an attacker gets nothing from any helper."""
    victim, cid = victim_conversation(db)
    with connect(db) as c:
        created = rpc(c, "SELECT created_at FROM memory.conversations WHERE id = %s", cid)
        c.execute("SELECT memory._request_summary(%s)", (cid,))  # the victim has a job
        # no helper takes a timestamp as proof any more (a share link's expiry and the date
        # filters of search and listing prove nothing: each checks the rule itself; the minute of
        # the messages-per-minute counter is the worker's, and no caller may execute it; a call's
        # cost at a time reads the prices, which are everyone's)
        assert rpc(c, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'memory'::regnamespace AND proname LIKE '\\_%%' "
                      "AND proname NOT IN ('_create_share_link', '_search_hits', '_semantic_hits', '_hybrid_hits', "
                      "'_list_conversations', '_add_minute_messages', '_llm_call_cost') "
                      "AND 'timestamptz'::regtype = ANY (proargtypes)") == 0
    attacker = new_user()
    with mode(db, attacker) as c:
        assert rpc(c, "SELECT memory._summary_job_status(%s)", cid) is None
        assert rpc(c, "SELECT memory.can_read(%s)", cid) is False
        assert rpc(c, "SELECT memory.can_write(%s)", cid) is False
        # listing with the victim's exact timestamp as a filter lists nothing of the victim's
        assert c.execute("SELECT id FROM memory.list_conversations(NULL, 1000, NULL, NULL, %s, NULL, NULL, NULL, NULL)",
                         (created + datetime.timedelta(seconds=1),)).fetchall() == []
    with pytest.raises(errors.NoDataFound):
        with mode(db, attacker) as c:
            c.execute("SELECT memory.request_summary(%s)", (cid,))
    # the implementations behind the entry points are no endpoints of their own
    for sql, args in (("SELECT memory._enqueue_job('summary', %s)", (cid,)),
                      ("SELECT memory._request_summary(%s)", (cid,)),
                      ("SELECT memory._share_conversation(%s, %s, 'editor')", (cid, attacker)),
                      ("SELECT memory._list_conversations(NULL, 10, NULL, NULL, NULL, NULL, NULL, NULL, NULL)", ()),
                      ("SELECT memory._erase_user(%s)", (victim,)),
                      ("SELECT memory._tool_key_taken(ARRAY[%s])", (f"{cid}/c/v1",))):
        with pytest.raises(errors.InsufficientPrivilege):
            with mode(db, attacker) as c:
                c.execute(sql, args)
    assert created is not None


def test_an_attacker_cannot_lock_the_victims_conversation(db):
    """A failed insert into someone else's conversation takes no lock on it: the victim's appends
    go on while the attacker's transaction sits aborted."""
    victim, cid = victim_conversation(db)
    with as_guc_user(db, new_user()) as attacker:
        attacker.execute("BEGIN")
        with pytest.raises(errors.NoDataFound):
            attacker.execute("INSERT INTO memory.conversation_messages (conversation_id, role, content) VALUES (%s, 'user', 'x')", (cid,))
        with as_guc_user(db, victim) as v:
            v.execute("SET lock_timeout = '2s'")
            assert rpc(v, "SELECT (memory.add_message(%s, 'user', 'still mine')).seq", cid) == 4
        attacker.execute("ROLLBACK")


# 4. Summary id squatting ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", [as_guc_user, as_jwt_user], ids=["login", "postgrest"])
def test_summary_ids_cannot_be_chosen(db, mode):
    user = new_user()
    with mode(db, user) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        c.execute("SELECT memory.add_message(%s, 'user', 'hello')", (cid,))
    with connect(db) as c:
        next_id = rpc(c, "SELECT coalesce(max(id), 0) + 1 FROM memory.conversation_summaries")
    with pytest.raises(errors.InsufficientPrivilege):
        with mode(db, user) as c:
            c.execute("""INSERT INTO memory.conversation_summaries (id, conversation_id, covers_through_seq, content, model)
                         OVERRIDING SYSTEM VALUE SELECT g, %s, 1, 'squat', 'x' FROM generate_series(%s, %s + 50) g""", (cid, next_id, next_id))
    # everyone else's summaries still go in
    other = new_user()
    with mode(db, other) as c:
        ocid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        c.execute("SELECT memory.add_message(%s, 'user', 'hello')", (ocid,))
        c.execute("INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model) VALUES (%s, 1, 'ok', 'app')", (ocid,))


# 5. Tool calls per message -------------------------------------------------------------------

def calls(n, prefix):
    return Jsonb([{"id": f"{prefix}{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in range(n)])


def test_tool_calls_per_message_are_bounded_and_checked_quickly(db):
    with as_guc_user(db, new_user()) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        c.execute("SET statement_timeout = '20s'")
        with pytest.raises(errors.ProgramLimitExceeded) as e:
            c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (cid, calls(100_000, "a")))
        assert "memory.max_" in e.value.diag.message_hint
        with pytest.raises(errors.ProgramLimitExceeded) as e:
            c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (cid, calls(5_000, "a")))
        assert "memory.max_tool_calls" in e.value.diag.message_hint
        with pytest.raises(errors.ProgramLimitExceeded):
            c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (cid, calls(129, "b")))
        # the limit itself is accepted, many times over, and duplicates are still found
        for k in range(20):
            c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (cid, calls(128, f"m{k}_")))
        with pytest.raises(errors.InvalidParameterValue) as e:
            c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (cid, calls(128, "m7_")))
        assert "duplicate tool call id" in str(e.value)
        assert rpc(c, "SELECT message_count FROM memory.conversations WHERE id = %s", cid) == 20
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("SET memory.max_tool_calls = 100000")


# 7. Size limits ------------------------------------------------------------------------------

def test_messages_over_the_size_limit_are_refused_before_any_work(db):
    with as_guc_user(db, new_user()) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        big = "x" * (4 * 1024 * 1024 + 1)
        with pytest.raises(errors.ProgramLimitExceeded) as e:
            c.execute("SELECT memory.add_message(%s, 'user', %s)", (cid, big))
        assert "memory.max_message_size" in e.value.diag.message_hint
        assert "x" * 100 not in str(e.value) and len(str(e.value)) < 4000  # no echo of the input
        with pytest.raises(errors.ProgramLimitExceeded):
            c.execute("INSERT INTO memory.conversation_messages (conversation_id, role, content) VALUES (%s, 'user', repeat('y', 50000000))", (cid,))
        # tool calls and ids count too
        with pytest.raises(errors.ProgramLimitExceeded):
            c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (cid, Jsonb([{"id": "a", "type": "function", "function": {"name": "f",
                                                                                                                                      "arguments": big}}])))
        c.execute("SELECT memory.add_message(%s, 'user', 'fine')", (cid,))
        with pytest.raises(errors.ProgramLimitExceeded):
            c.execute("INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model) VALUES (%s, 1, %s, 'x')", (cid, big))
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("SET memory.max_message_size = '64MB'")
        assert rpc(c, "SELECT message_count FROM memory.conversations WHERE id = %s", cid) == 1


def test_every_accepted_message_can_be_read_back(db):
    """With the limit raised to 30 MB, three 25 MB messages are accepted; get_messages pages them
    (a page stays under 64 MB) and build_context returns the newest whole."""
    with connect(db) as c:
        c.execute(f"ALTER DATABASE {db} SET memory.max_message_size = '30MB'")
    try:
        with as_guc_user(db, new_user()) as c:
            cid = rpc(c, "SELECT (memory.create_conversation(%s, encoding => 'chars4')).id", AGENT)
            for i in range(3):
                c.execute("SELECT memory.add_message(%s, 'user', repeat(%s, 25 * 1024 * 1024))", (cid, str(i)))
            page = rpc(c, "SELECT memory.get_messages(%s, 3)", cid)
            assert [m["seq"] for m in page["messages"]] == [2, 3]
            assert page["has_more"] is True and page["next_before_seq"] == 2
            page = rpc(c, "SELECT memory.get_messages(%s, 3, 2)", cid)
            assert [m["seq"] for m in page["messages"]] == [1] and page["has_more"] is False
            ctx = rpc(c, "SELECT memory.build_context(%s, 100)", cid)
            assert ctx["overflow"] is True and len(ctx["messages"][-1]["content"]) == 25 * 1024 * 1024
    finally:
        with connect(db) as c:
            c.execute(f"ALTER DATABASE {db} RESET memory.max_message_size")


# 8. The summarize threshold's floor -----------------------------------------------------------

def test_a_session_cannot_go_below_the_operators_threshold_floor(db):
    with as_guc_user(db, new_user()) as c:
        c.execute("SET memory.summarize_threshold = 1")
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        for _ in range(5):
            c.execute("SELECT memory.add_message(%s, 'user', %s)", (cid, "a few words of chat " * 5))
        status = rpc(c, "SELECT memory.summary_status(%s)", cid)
        assert status["threshold"] == 1000 and status["should_summarize"] is False and status["job"] is None
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("SET memory.min_summarize_threshold = 1")


# 9. Counter tampering ------------------------------------------------------------------------

def test_counters_cannot_be_rewritten_from_a_trigger_of_ones_own(db):
    with as_guc_user(db, new_user()) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        c.execute("SELECT memory.add_message(%s, 'user', 'one')", (cid,))
        c.execute("CREATE TEMP TABLE t (x int)")
        c.execute(f"""CREATE FUNCTION pg_temp.tamper() RETURNS trigger LANGUAGE plpgsql AS $$
                      BEGIN UPDATE memory.conversations SET last_seq = 999, total_tokens = -5, message_count = 0 WHERE id = '{cid}'; RETURN NEW; END $$""")
        c.execute("CREATE TRIGGER t_tamper BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION pg_temp.tamper()")
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("INSERT INTO t VALUES (1)")
        # nor can memory_ext's own trigger functions be borrowed
        for fn in ("_message_before_insert", "_message_before_insert_write", "_conversation_before_update",
                   "_messages_after_insert", "_messages_after_delete", "_messages_statement_begin", "_messages_statement_end"):
            with pytest.raises(errors.InsufficientPrivilege):
                c.execute(f"CREATE TRIGGER t_{fn} BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION memory.{fn}()")
        assert c.execute("SELECT last_seq, message_count FROM memory.conversations WHERE id = %s", (cid,)).fetchone() == (1, 1)
        assert rpc(c, "SELECT (memory.add_message(%s, 'user', 'two')).seq", cid) == 2


# 10. Summaries are validated and immutable ---------------------------------------------------

@pytest.mark.parametrize("mode", [as_guc_user, as_jwt_user], ids=["login", "postgrest"])
def test_summaries_are_validated_and_immutable(db, mode):
    with mode(db, new_user()) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        for i in range(10):
            c.execute("SELECT memory.add_message(%s, %s, %s)", (cid, "user" if i % 2 == 0 else "assistant", f"turn {i} " + "word " * 100))
        for bad in (11, 0, -1):
            with pytest.raises(errors.InvalidParameterValue):
                with c.transaction():
                    c.execute("INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model) VALUES (%s, %s, 's', 'x')",
                              (cid, bad))
        sid = rpc(c,
                  "INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model) VALUES (%s, 5, 'the first five turns', 'x') RETURNING id", cid)
        for col, val in (("token_count", -1000000), ("covered_tokens", 10 ** 9), ("content", "changed"), ("covers_through_seq", 10)):
            with pytest.raises(errors.InsufficientPrivilege):
                with c.transaction():
                    c.execute(f"UPDATE memory.conversation_summaries SET {col} = %s WHERE id = %s", (val, sid))
        ctx = rpc(c, "SELECT memory.build_context(%s, 500)", cid)
        assert ctx["summary_included"] is True
        assert ctx["token_count"] == rpc(c, "SELECT memory.count_message_tokens(%s)", Jsonb(ctx["messages"])) <= 500


# 11. What errors quote, and what NOTIFY carries -----------------------------------------------

def test_errors_quote_at_most_a_little_of_the_input(db):
    huge = "z" * 1_000_000
    with as_guc_user(db, new_user()) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        for sql, args in (("SELECT memory.add_message(%s, %s, 'x')", (cid, huge)),
                          ("SELECT memory.add_message(%s, 'user', 'x', name => %s)", (cid, huge)),
                          ("SELECT memory.add_message(%s, 'tool', 'x', tool_call_id => %s)", (cid, huge)),
                          ("SELECT memory.add_message(%s, 'assistant', '', %s)", (cid, Jsonb([{"id": huge, "type": "function", "function": {"name": "f",
                                                                                                                                            "arguments": "{}"}}] * 2))),
                          ("SELECT memory.estimate_tokens('x', %s)", (huge,))):
            with pytest.raises(psycopg.Error) as e:
                c.execute(sql, args)
            assert len(str(e.value)) < 1000, sql


def test_summary_notifications_carry_only_a_job_id(db):
    with as_guc_user(db, new_user()) as listener:
        listener.execute("LISTEN memory_summary_jobs")
        with as_guc_user(db, new_user()) as c:
            cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
            c.execute("SELECT memory.add_message(%s, 'user', 'secret words')", (cid,))
            job = rpc(c, "SELECT memory.request_summary(%s)", cid)
        deadline = time.time() + 5
        got = []
        while not got and time.time() < deadline:
            got = list(listener.notifies(timeout=1, stop_after=1))
        assert [n.payload for n in got] == [str(job)]
