"""Export, import, fork and rewind end to end: lossless round trips of realistic conversations,
Markdown that stays well-formed for hostile content (checked with a CommonMark parser), imports
that fail as a whole at message k, large forks that keep totals exact, and RLS as PostgREST
applies it: another user's conversation cannot be exported, forked, rewound or imported into."""
import json
import random
import uuid

import psycopg
import pytest
from markdown_it import MarkdownIt

from conftest import as_guc_user, as_jwt_user, new_user, rpc

AGENT = "a0000000-0000-0000-0000-00000000f00d"
HOSTILE = ["```\nunclosed fence", "````python\nprint('x')\n````", "~~~\ntilde\n~~~", "<script>alert(1)</script>",
           '<img src=x onerror="alert(1)">', "# Heading\n---\n* list", "x" * 20000, "`` ` ``` ````` ``````",
           "line\r\nwith\rreturns", "[link](javascript:alert(1))", "</code></pre><b>out</b>"]


def fill(c, cid, rng, n):
    """n messages: prose, hostile text, OpenAI tool calls with results, combined records, names,
    metadata and idempotency keys."""
    k = 0
    while k < n:
        r = rng.random()
        if r < 0.15 and k + 2 <= n:
            call = f"call_{k}"
            c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (cid, json.dumps(
                [{"id": call, "type": "function", "function": {"name": "lookup", "arguments": json.dumps({"q": rng.choice(HOSTILE)[:50]})}}])))
            c.execute("SELECT memory.add_message(%s, 'tool', %s, tool_call_id => %s)", (cid, rng.choice(HOSTILE), call))
            k += 2
            continue
        if r < 0.2:
            c.execute("SELECT memory.add_message(%s, 'assistant', 'checked', %s)", (cid, json.dumps(
                [{"id": f"g{k}", "tool": "search", "input": {"q": "x"}, "output": rng.choice(HOSTILE)}])))
        else:
            role = rng.choice(["user", "assistant"])
            c.execute("SELECT memory.add_message(%s, %s, %s, name => %s, metadata => %s, idempotency_key => %s)",
                      (cid, role, rng.choice(HOSTILE + [f"message {k}"]), "alice" if k % 5 == 0 and role == "user" else None,
                       json.dumps({"k": k}) if k % 3 == 0 else None, f"key-{k}" if k % 4 == 0 else None))
        k += 1


def without_ids(doc):
    doc = json.loads(json.dumps(doc))
    doc["conversation"].pop("id")
    doc["conversation"].pop("updated_at")
    for m in doc["messages"] + doc["summaries"]:
        m.pop("id")
    return doc


@pytest.fixture(scope="module")
def owner(db):
    uid = new_user()
    with as_guc_user(db, uid) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s, %s)).id", AGENT, "<b>hostile</b> ``` title")
        fill(c, cid, random.Random(7), 300)
        c.execute("INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model) VALUES (%s, 120, 'sum', 'm')", (cid,))
    return uid, cid


def test_json_round_trip_is_lossless(db, owner):
    uid, cid = owner
    with as_guc_user(db, uid) as c:
        first = rpc(c, "SELECT memory.export_conversation(%s)", cid)
        copy = rpc(c, "SELECT memory.import_conversation(%s)", json.dumps(first))
        again = rpc(c, "SELECT memory.export_conversation(%s)", copy)
        assert without_ids(again) == without_ids(first)
        assert first["version"] == 1 and len(first["messages"]) == 300 and first["summaries"][0]["covers_through_seq"] == 120
        # openai: the payload round-trips as a payload, and it is what build_context sends
        payload = rpc(c, "SELECT memory.export_conversation(%s, 'openai')", cid)
        assert payload["messages"] == rpc(c, "SELECT memory.build_context(%s, 1000000)", cid)["messages"]
        reimported = rpc(c, "SELECT memory.import_conversation(%s)", json.dumps(payload))
        assert rpc(c, "SELECT memory.export_conversation(%s, 'openai')", reimported) == payload
        assert rpc(c, "SELECT total_tokens FROM memory.conversations WHERE id = %s", reimported) == \
            rpc(c, "SELECT total_tokens FROM memory.conversations WHERE id = %s", cid)


def test_markdown_stays_well_formed_for_hostile_content(db, owner):
    uid, cid = owner
    with as_guc_user(db, uid) as c:
        md = rpc(c, "SELECT memory.export_conversation(%s, 'markdown') #>> '{}'", cid)
        rows = c.execute("SELECT role, content, tool_calls FROM memory.conversation_messages WHERE conversation_id = %s ORDER BY seq", (cid,)).fetchall()
    tokens = MarkdownIt("commonmark").parse(md)
    # no HTML reaches a renderer: every hostile string stayed inside a code block or was escaped
    assert not [t for t in tokens if t.type in ("html_block", "html_inline")]
    assert not [t for t in tokens for ch in (t.children or []) if ch.type == "html_inline"]
    fences = [t for t in tokens if t.type == "fence"]
    headings = [t for t in tokens if t.type == "heading_open" and t.tag == "h3"]
    assert len(headings) == len(rows)  # one per message: no content opened a heading of its own
    bodies = [f.content.rstrip("\n") for f in fences if f.info == "text"]
    # every message's text is one code block, verbatim (line ends as CommonMark normalises them)
    expected = [content for role, content, calls in rows if content != "" or calls is None]
    expected += [call["output"] for _, _, calls in rows if calls for call in calls if "output" in call]
    norm = lambda s: s.replace("\r\n", "\n").replace("\r", "\n")  # noqa: E731
    assert sorted(bodies) == sorted(norm(e) for e in expected)
    assert md.startswith("# \\<") is False and md.startswith("# &lt;b&gt;hostile&lt;/b&gt;")


def test_import_fails_as_a_whole_with_the_index(db):
    uid = new_user()
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(2000)]
    msgs[1500] = {"role": "tool", "content": "orphan", "tool_call_id": "never-called"}
    with as_guc_user(db, uid) as c:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
            c.execute("SELECT memory.import_conversation(%s)", (json.dumps(msgs),))
        assert "message 1500 of the import" in str(e.value) and e.value.diag.message_hint
        assert rpc(c, "SELECT count(*) FROM memory.conversations") == 0
        msgs[1500] = {"role": "user", "content": "x" * (5 * 1024 * 1024)}
        with pytest.raises(psycopg.errors.ProgramLimitExceeded) as e:
            c.execute("SELECT memory.import_conversation(%s)", (json.dumps(msgs),))
        assert "message 1500" in str(e.value)
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            c.execute("SELECT memory.import_conversation(%s)", (json.dumps({"format": "memory_ext.conversation", "version": 1,
                                                                          "messages": msgs[:3], "summaries": [{"covers_through_seq": 99, "content": "s"}]}),))
        assert rpc(c, "SELECT count(*) FROM memory.conversations") == 0
        msgs[1500] = {"role": "user", "content": "fine"}
        cid = rpc(c, "SELECT memory.import_conversation(%s, title => 'bulk')", json.dumps(msgs))
        assert c.execute("SELECT message_count, last_seq, title FROM memory.conversations WHERE id = %s", (cid,)).fetchone() == (2000, 2000, "bulk")


def test_large_fork_keeps_totals_exact(db):
    uid = new_user()
    with as_guc_user(db, uid) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        c.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content)
                     SELECT %s, CASE WHEN i %% 2 = 0 THEN 'user' ELSE 'assistant' END, 'message number ' || i
                       FROM generate_series(1, 5000) i""", (cid,))
        c.execute("INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model) VALUES (%s, 4000, 'older', 'm')", (cid,))
        fork = rpc(c, "SELECT memory.fork_conversation(%s, 4500)", cid)
        got = c.execute("SELECT message_count, total_tokens, last_seq, user_id::text FROM memory.conversations WHERE id = %s", (fork,)).fetchone()
        want = c.execute("SELECT count(*), sum(token_count), max(seq) FROM memory.conversation_messages WHERE conversation_id = %s AND seq <= 4500", (cid,)).fetchone()
        assert got[:3] == (want[0], want[1], want[2]) and got[3] == uid
        assert rpc(c, "SELECT memory.build_context(%s, 300)", fork)["summary_included"] is True
        assert rpc(c, "SELECT covered_tokens FROM memory.conversation_summaries WHERE conversation_id = %s", fork) == \
            rpc(c, "SELECT sum(token_count) FROM memory.conversation_messages WHERE conversation_id = %s AND seq <= 4000", cid)
        # the tool-key index serves the copy too: a result for a call of the fork is accepted once
        c.execute("SELECT memory.add_message(%s, 'assistant', '', '[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]')", (fork,))
        c.execute("SELECT memory.add_message(%s, 'tool', 'r', tool_call_id => 'c1')", (fork,))
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            c.execute("SELECT memory.add_message(%s, 'tool', 'again', tool_call_id => 'c1')", (fork,))


def test_other_users_cannot_touch_it_through_postgrest(db, owner):
    uid, cid = owner
    mallory = new_user()
    for sql, args in [("SELECT memory.export_conversation(%s)", (cid,)), ("SELECT memory.export_conversation(%s, 'markdown')", (cid,)),
                      ("SELECT memory.export_conversation(%s, 'openai')", (cid,)), ("SELECT memory.fork_conversation(%s)", (cid,)),
                      ("SELECT memory.rewind_conversation(%s, 0)", (cid,))]:
        with as_jwt_user(db, mallory) as c:
            with pytest.raises(psycopg.errors.NoDataFound):
                c.execute(sql, args)
    for sql in ("SELECT memory.import_conversation('[]')", "SELECT memory.fork_conversation(%s)"):
        with as_jwt_user(db, None) as anon:  # no sub: no identity
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                anon.execute(sql, (cid,) if "%s" in sql else None)
    # an export of the owner's conversation imported by mallory becomes mallory's own copy
    with as_jwt_user(db, uid) as c:
        doc = rpc(c, "SELECT memory.export_conversation(%s)", cid)
    with as_jwt_user(db, mallory) as c:
        copy = rpc(c, "SELECT memory.import_conversation(%s)", json.dumps(doc))
        assert str(rpc(c, "SELECT user_id FROM memory.conversations WHERE id = %s", copy)) == mallory
        assert rpc(c, "SELECT count(*) FROM memory.conversations") == 1
    with as_guc_user(db, uid) as c:
        assert rpc(c, "SELECT message_count FROM memory.conversations WHERE id = %s", cid) == 300
        assert rpc(c, "SELECT count(*) FROM memory.conversations WHERE id = %s", copy) == 0
        assert uuid.UUID(str(copy))
