"""Row-level security exactly as PostgREST/Supabase applies it (role + JWT claims) and as an
application server does (memory.user_id): user B can do nothing with user A's conversation,
through any table or function, and sees the same error as for a conversation that does not
exist. No identity sees nothing."""
import json
import uuid

import pytest
from psycopg import errors

from support.pg import as_guc_user, as_jwt_user, connect, new_user, rpc

AGENT = str(uuid.uuid4())

MODES = [as_jwt_user, as_guc_user]


def setup_conversation(db, mode, user):
    with mode(db, user) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s, 'secret')).id", AGENT)
        rpc(c, "SELECT (memory.add_message(%s, 'user', 'my secret plan')).seq", cid)
        c.execute("""SELECT memory.add_message(%s, 'assistant', '', '[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]')""", (cid,))
        c.execute("SELECT memory.add_message(%s, 'tool', 'result', tool_call_id => 'c1')", (cid,))
    return cid


def counts(db, cid):
    with connect(db) as c:
        return c.execute(
            "SELECT message_count, total_tokens, title, (SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s) FROM memory.conversations WHERE id = %s",
            (cid, cid)).fetchone()


@pytest.mark.parametrize("mode", MODES, ids=["jwt", "guc"])
def test_owner_sees_own_conversation(db, mode):
    a = new_user()
    cid = setup_conversation(db, mode, a)
    with mode(db, a) as c:
        assert rpc(c, "SELECT count(*) FROM memory.conversations") == 1
        assert rpc(c, "SELECT count(*) FROM memory.conversation_messages") == 3
        page = rpc(c, "SELECT memory.get_messages(%s)", cid)
        assert [m["seq"] for m in page["messages"]] == [1, 2, 3]
        ctx = rpc(c, "SELECT memory.build_context(%s)", cid)
        assert ctx["included_messages"] == 3
        assert rpc(c, "SELECT count(*) FROM memory.list_conversations()") == 1


@pytest.mark.parametrize("mode", MODES, ids=["jwt", "guc"])
def test_other_user_can_do_nothing(db, mode):
    a, b = new_user(), new_user()
    cid = setup_conversation(db, mode, a)
    before = counts(db, cid)

    def not_found(sql, *args):
        with pytest.raises(errors.NoDataFound) as e:
            with mode(db, b) as c:
                c.execute(sql, args)
        assert f"conversation {cid} does not exist" in str(e.value)

    # the same error as for an id that does not exist at all
    ghost = str(uuid.uuid4())
    with pytest.raises(errors.NoDataFound) as e:
        with mode(db, b) as c:
            c.execute("SELECT memory.build_context(%s)", (ghost,))
    assert f"conversation {ghost} does not exist" in str(e.value)

    not_found("SELECT memory.build_context(%s)", cid)
    not_found("SELECT memory.get_messages(%s)", cid)
    not_found("SELECT memory.add_message(%s, 'user', 'injected')", cid)
    not_found("INSERT INTO memory.conversation_messages (conversation_id, role, content) VALUES (%s, 'user', 'x')", cid)

    with mode(db, b) as c:
        assert rpc(c, "SELECT count(*) FROM memory.conversations") == 0
        assert rpc(c, "SELECT count(*) FROM memory.conversation_messages") == 0
        assert rpc(c, "SELECT count(*) FROM memory.conversation_summaries") == 0
        assert rpc(c, "SELECT count(*) FROM memory.list_conversations()") == 0
        assert rpc(c, "SELECT count(*) FROM memory.list_conversations(%s)", AGENT) == 0
        assert c.execute("UPDATE memory.conversations SET title = 'pwned' WHERE id = %s", (cid,)).rowcount == 0
        assert c.execute("UPDATE memory.conversation_messages SET metadata = '{}' WHERE conversation_id = %s", (cid,)).rowcount == 0
        assert c.execute("DELETE FROM memory.conversation_messages WHERE conversation_id = %s", (cid,)).rowcount == 0
        assert c.execute("DELETE FROM memory.conversations WHERE id = %s", (cid,)).rowcount == 0
        assert rpc(c, "SELECT memory.delete_conversation(%s)", cid) is False
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("SELECT * FROM memory.jobs")
    # B cannot hand a conversation of its own to A either
    with pytest.raises(errors.InsufficientPrivilege):
        with mode(db, b) as c:
            c.execute("INSERT INTO memory.conversations (agent_id, user_id) VALUES (%s, %s)", (AGENT, a))
    assert counts(db, cid) == before


@pytest.mark.parametrize("mode", MODES, ids=["jwt", "guc"])
def test_no_identity_sees_and_writes_nothing(db, mode):
    cid = setup_conversation(db, mode, new_user())
    with mode(db, None) as c:
        assert rpc(c, "SELECT memory.current_user_id()") is None
        assert rpc(c, "SELECT count(*) FROM memory.conversations") == 0
        assert rpc(c, "SELECT count(*) FROM memory.conversation_messages") == 0
    with pytest.raises(errors.InsufficientPrivilege) as e:
        with mode(db, None) as c:
            c.execute("SELECT memory.create_conversation(%s)", (AGENT,))
    assert "no user identity" in str(e.value)
    with pytest.raises(errors.NoDataFound):
        with mode(db, None) as c:
            c.execute("SELECT memory.build_context(%s)", (cid,))


def test_claims_win_over_the_setting(db):
    """In a session that may use both (here the superuser's), claims win; claims without sub are
    anonymous, not the setting's user."""
    a, b = new_user(), new_user()
    with connect(db) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (a,))
        with c.transaction():
            c.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": b}),))
            assert str(rpc(c, "SELECT memory.current_user_id()")) == b
            c.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps({"role": "anon"}),))
            assert rpc(c, "SELECT memory.current_user_id()") is None
        assert str(rpc(c, "SELECT memory.current_user_id()")) == a
        # the older per-claim setting
        with c.transaction():
            c.execute("SELECT set_config('request.jwt.claim.sub', %s, true)", (b,))
            assert str(rpc(c, "SELECT memory.current_user_id()")) == b
    # the gateway login, after SET ROLE, exactly as PostgREST runs a request
    with as_jwt_user(db, b) as c:
        assert str(rpc(c, "SELECT memory.current_user_id()")) == b
        assert rpc(c, "SELECT current_user") == "authenticated"


def test_bad_sub_is_an_error(db):
    with pytest.raises(errors.InvalidTextRepresentation):
        with as_jwt_user(db, "not-a-uuid") as c:
            c.execute("SELECT memory.current_user_id()")


def test_trust_user_id_setting_is_superuser_only_and_switches_guc_mode_off(db):
    a = new_user()
    with connect(db, "app") as c:
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("SET memory.trust_user_id_setting = off")
    with connect(db) as c:
        c.execute(f"ALTER ROLE app IN DATABASE {db} SET memory.trust_user_id_setting = off")
    try:
        with connect(db, "app") as c:
            c.execute("SELECT set_config('memory.user_id', %s, false)", (a,))
            assert rpc(c, "SELECT memory.current_user_id()") is None
            # and the application's login is no gateway: its claims count neither
            c.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": a}),))
            assert rpc(c, "SELECT memory.current_user_id()") is None
    finally:
        with connect(db) as c:
            c.execute(f"ALTER ROLE app IN DATABASE {db} RESET memory.trust_user_id_setting")
    # PostgREST's identity is unaffected by the switch
    with as_jwt_user(db, a) as c:
        assert str(rpc(c, "SELECT memory.current_user_id()")) == a


def test_counters_cannot_be_forged(db):
    a = new_user()
    with as_guc_user(db, a) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("UPDATE memory.conversations SET total_tokens = 12345 WHERE id = %s", (cid,))
        # an INSERT with made-up counters gets the real ones
        row = c.execute("INSERT INTO memory.conversations (agent_id, total_tokens, message_count) VALUES (%s, 999, 9) RETURNING total_tokens, message_count",
                        (AGENT,)).fetchone()
        assert row == (0, 0)
        # title and metadata are the owner's to change
        c.execute("UPDATE memory.conversations SET title = 'renamed', metadata = '{\"k\": 1}' WHERE id = %s", (cid,))
        assert rpc(c, "SELECT title FROM memory.conversations WHERE id = %s", cid) == "renamed"


def test_service_role_style_bypass_still_works(db):
    """A BYPASSRLS role with no identity (Supabase's service_role) can append to any conversation."""
    a = new_user()
    cid = setup_conversation(db, as_guc_user, a)
    with connect(db) as c:
        c.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service') THEN CREATE ROLE service BYPASSRLS; END IF; END $$")
        with c.transaction():
            c.execute("SET LOCAL ROLE service")
            assert rpc(c, "SELECT (memory.add_message(%s, 'system', 'note from the backend')).seq", cid) == 4
