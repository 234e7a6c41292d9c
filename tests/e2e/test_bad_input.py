"""Bad input: each case gets a clear error with a real SQLSTATE, and nothing is written."""
import json
import time
import uuid

import pytest

import support.tiktoken_offline  # noqa: F401  (tiktoken's vocabularies without network)

# isort: split
import tiktoken
from psycopg import errors

from support.pg import as_guc_user, connect, new_user, rpc

AGENT = str(uuid.uuid4())
CALL = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]


@pytest.fixture
def conv(db):
    user = new_user()
    with as_guc_user(db, user) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        c.execute("SELECT memory.add_message(%s, 'user', 'hello')", (cid,))
        c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (cid, json.dumps(CALL)))
    return user, cid


def state(db, cid):
    with connect(db) as c:
        return c.execute("""SELECT message_count, total_tokens,
                                   (SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s),
                                   (SELECT max(seq) FROM memory.conversation_messages WHERE conversation_id = %s)
                              FROM memory.conversations WHERE id = %s""", (cid, cid, cid)).fetchone()


BAD_MESSAGES = [
    # (role, content, tool_calls, name, tool_call_id, error, text)
    ("robot", "x", None, None, None, errors.InvalidParameterValue, 'unknown role "robot"'),
    ("tool", "x", None, None, None, errors.InvalidParameterValue, "needs tool_call_id"),
    ("tool", "x", None, None, "no-such-call", errors.InvalidParameterValue, "matches no earlier assistant tool call"),
    ("user", "x", None, None, "c1", errors.InvalidParameterValue, "tool messages only"),
    ("assistant", "", {"id": "x"}, None, None, errors.InvalidParameterValue, "must be a JSON array"),
    ("assistant", "", [{"type": "function", "function": {"name": "f", "arguments": "{}"}}], None, None, errors.InvalidParameterValue, '"id"'),
    ("assistant", "", [{"id": "z", "type": "function", "function": {"arguments": "{}"}}], None, None, errors.InvalidParameterValue, '"name"'),
    ("assistant", "", [{"id": "z", "nonsense": 1}], None, None, errors.InvalidParameterValue, "neither"),
    ("assistant", "", CALL, None, None, errors.InvalidParameterValue, 'duplicate tool call id "c1"'),
    ("assistant", "", [{"id": "d", "tool": "t", "output": 1}, {"id": "d", "tool": "t", "output": 2}], None, None, errors.InvalidParameterValue,
     "duplicate tool call id"),
    ("user", "x", [{"id": "u", "tool": "t", "output": 1}], None, None, errors.InvalidParameterValue, "assistant messages only"),
    ("user", "x", None, "not a valid name!", None, errors.InvalidParameterValue, "invalid name"),
    ("user", None, None, None, None, errors.NullValueNotAllowed, "content"),
]


@pytest.mark.parametrize("role,content,calls,name,call_id,exc,text", BAD_MESSAGES,
                         ids=[f"{i}-{c[6][:24]}" for i, c in enumerate(BAD_MESSAGES)])
def test_bad_messages_are_rejected_and_change_nothing(db, conv, role, content, calls, name, call_id, exc, text):
    user, cid = conv
    before = state(db, cid)
    for sql in ("SELECT memory.add_message(%s, %s, %s, %s, %s, %s)",
                "INSERT INTO memory.conversation_messages (conversation_id, role, content, tool_calls, name, tool_call_id) VALUES (%s, %s, %s, %s, %s, %s)"):
        with pytest.raises(exc) as e:
            with as_guc_user(db, user) as c:
                c.execute(sql, (cid, role, content, json.dumps(calls) if calls is not None else None, name, call_id))
        assert text in str(e.value)
    assert state(db, cid) == before


def test_unknown_encoding(db, conv):
    user, _ = conv
    with as_guc_user(db, user) as c:
        for sql, args in (("SELECT memory.estimate_tokens('x', 'p50k_base')", ()),
                          ("SELECT memory.create_conversation(%s, encoding => 'klingon')", (AGENT,)),
                          ("SELECT memory.count_message_tokens('[]', 'nope')", ())):
            with pytest.raises(errors.InvalidParameterValue) as e:
                c.execute(sql, args)
            assert "unknown encoding" in str(e.value) and "o200k_base" in str(e.value)
        c.execute("SET memory.default_encoding = 'klingon'")
        with pytest.raises(errors.InvalidParameterValue):
            c.execute("SELECT memory.create_conversation(%s)", (AGENT,))
        c.execute("RESET memory.default_encoding")
        assert rpc(c, "SELECT count(*) FROM memory.conversations") == 1


def test_limits_and_budgets(db, conv):
    user, cid = conv
    with as_guc_user(db, user) as c:
        for sql in ("SELECT memory.get_messages(%s, 0)", "SELECT memory.get_messages(%s, -5)",
                    "SELECT memory.get_messages(%s, 100000)", "SELECT memory.build_context(%s, 0)",
                    "SELECT memory.build_context(%s, -1)"):
            with pytest.raises(errors.InvalidParameterValue):
                c.execute(sql, (cid,))
        for sql in ("SELECT * FROM memory.list_conversations(NULL, 0)", "SELECT * FROM memory.list_conversations(NULL, -1)"):
            with pytest.raises(errors.InvalidParameterValue):
                c.execute(sql)
        with pytest.raises(errors.InvalidParameterValue) as e:
            c.execute("SELECT memory.build_context(%s, 10, repeat('long prompt ', 100))", (cid,))
        assert "system prompt alone needs" in str(e.value)
        # max_tokens NULL is the agent's budget, or 8000 for a conversation without an agents row
        assert c.execute("SELECT memory.build_context(%s, NULL)", (cid,)).fetchone()[0]["max_tokens"] == 8000
        for sql in ("SELECT memory.build_context(NULL)", "SELECT memory.get_messages(NULL)",
                    "SELECT memory.build_context_from(NULL)", "SELECT memory.create_conversation(NULL)"):
            with pytest.raises(errors.NullValueNotAllowed):
                c.execute(sql)
        for bad in ('{"role": "user"}', '[1]', '[{"content": "no role"}]', '[{"role": "user", "content": 5}]'):
            with pytest.raises(errors.InvalidParameterValue):
                c.execute("SELECT memory.build_context_from(%s::jsonb)", (bad,))
        with pytest.raises(errors.InvalidTextRepresentation):
            c.execute("SELECT memory.build_context('not-a-uuid')")


def test_messages_are_append_only(db, conv):
    user, cid = conv
    before = state(db, cid)
    with as_guc_user(db, user) as c:
        with pytest.raises(errors.FeatureNotSupported):
            c.execute("UPDATE memory.conversation_messages SET content = 'rewritten' WHERE conversation_id = %s", (cid,))
        c.execute("UPDATE memory.conversation_messages SET metadata = '{\"starred\": true}' WHERE conversation_id = %s AND seq = 1", (cid,))
        with pytest.raises(errors.InvalidParameterValue):
            c.execute("UPDATE memory.conversations SET encoding = 'o200k_base' WHERE id = %s", (cid,))
    assert state(db, cid) == before


def test_deleting_messages_keeps_totals_and_takes_results_along(db, conv):
    user, cid = conv  # seq 1: user, seq 2: the call c1
    with as_guc_user(db, user) as c:
        c.execute("SELECT memory.add_message(%s, 'tool', 'r', tool_call_id => 'c1')", (cid,))
        c.execute("SELECT memory.add_message(%s, 'assistant', 'a')", (cid,))
        c.execute("DELETE FROM memory.conversation_messages WHERE conversation_id = %s AND seq = 2", (cid,))
        assert [r[0] for r in c.execute("SELECT seq FROM memory.conversation_messages WHERE conversation_id = %s ORDER BY seq", (cid,))] == [1, 4]
        count, total = c.execute("SELECT message_count, total_tokens FROM memory.conversations WHERE id = %s", (cid,)).fetchone()
        assert count == 2
        assert total == rpc(c, "SELECT sum(token_count) FROM memory.conversation_messages WHERE conversation_id = %s", cid)
        # the next message continues after the highest seq
        assert rpc(c, "SELECT (memory.add_message(%s, 'user', 'next')).seq", cid) == 5
        assert rpc(c, "SELECT memory.delete_conversation(%s)", cid) is True
        assert rpc(c, "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", cid) == 0


def test_huge_content_is_counted_and_cancellable(db, conv):
    user, cid = conv
    big = ("The quick brown fox jumps over the lazy dog. " * 110_000)  # ~5 MB
    with connect(db) as c:  # over the default memory.max_message_size: the operator raised it
        c.execute(f"ALTER DATABASE {db} SET memory.max_message_size = '64MB'")
    try:
        huge_content_is_counted_and_cancellable(db, user, cid, big)
    finally:
        with connect(db) as c:
            c.execute(f"ALTER DATABASE {db} RESET memory.max_message_size")


def huge_content_is_counted_and_cancellable(db, user, cid, big):
    with as_guc_user(db, user) as c:
        t = time.monotonic()
        n = rpc(c, "SELECT memory.estimate_tokens(%s)", big)
        elapsed = time.monotonic() - t
        assert n == len(tiktoken.get_encoding("cl100k_base").encode_ordinary(big))
        row = c.execute("SELECT seq, token_count FROM memory.add_message(%s, 'user', %s)", (cid, big)).fetchone()
        assert row[1] == n + 4  # framing 3 + "user" 1
        # a statement_timeout well below the counting time cancels it, and nothing is written
        before = state(db, cid)
        c.execute(f"SET statement_timeout = '{max(20, int(elapsed * 500))}ms'")
        huge = big * 8
        with pytest.raises(errors.QueryCanceled):
            c.execute("SELECT memory.add_message(%s, 'user', %s)", (cid, huge))
        with pytest.raises(errors.QueryCanceled):
            c.execute("SELECT memory.estimate_tokens(%s)", (huge,))
        c.execute("RESET statement_timeout")
        assert state(db, cid) == before
        print(f"5 MB counted in {elapsed * 1000:.0f} ms")


def test_long_unsplittable_run(db):
    """1 MB that tiktoken's regex cannot split (tiktoken is quadratic on it) is counted."""
    with connect(db) as c:
        n, ids = c.execute("SELECT memory.estimate_tokens(repeat('a', 1000000)), cardinality(memory.tokenize(repeat('a', 1000000)))").fetchone()
        assert n == ids and 1000000 / 16 < n < 1000000 / 2
