"""Export, import, fork and rewind end to end: lossless round trips of realistic conversations,
Markdown that stays well-formed for hostile content (checked with a CommonMark parser), imports
that fail as a whole at message k, large forks that keep totals exact, and RLS as PostgREST
applies it: another user's conversation cannot be exported, forked, rewound or imported into."""
import json
import os
import random
import uuid

import psycopg
import pytest
from markdown_it import MarkdownIt

from support.pg import as_guc_user, as_jwt_user, new_user, rpc

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
        want = c.execute("SELECT count(*), sum(token_count), max(seq) FROM memory.conversation_messages WHERE conversation_id = %s AND seq <= 4500", (cid,
                                                                                                                                                      )).fetchone()
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


def defective(rng, n):
    """A random history, valid or carrying one of the defects add_message refuses."""
    msgs, calls = [], []
    for i in range(n):
        if calls and rng.random() < 0.4:
            msgs.append({"role": "tool", "content": f"result {i}", "tool_call_id": calls.pop(0)})
        elif rng.random() < 0.25:
            ids = [f"c{i}_{k}" for k in range(rng.randint(1, 2))]
            calls += ids
            msgs.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": c, "type": "function", "function": {"name": "f", "arguments": "{}"}} for c in ids]})
        elif rng.random() < 0.1:
            msgs.append({"role": "assistant", "content": "combined", "tool_calls": [{"id": f"g{i}", "tool": "t", "input": {}, "output": "o"}]})
        else:
            msgs.append({"role": rng.choice(["user", "assistant", "system"]), "content": f"text {i}",
                         **({"name": "bob"} if rng.random() < 0.1 else {})})
    defect = rng.choice([None, None, "orphan", "twice", "dup-call", "answers-combined", "content-list", "role", "name", "big",
                         "calls-on-user", "dup-key-same", "dup-key-other"])
    k = rng.randrange(len(msgs))
    answered = [m for m in msgs if m["role"] == "tool"]
    if defect == "orphan":
        msgs.insert(k, {"role": "tool", "content": "x", "tool_call_id": "nobody"})
    elif defect == "twice" and answered:
        msgs.append(dict(answered[0]))
    elif defect == "dup-call":
        msgs.append({"role": "assistant", "content": "", "tool_calls": [{"id": "same", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
        msgs.insert(k, {"role": "assistant", "content": "", "tool_calls": [{"id": "same", "tool": "t", "input": {}}]})
    elif defect == "answers-combined":
        msgs.append({"role": "assistant", "content": "c", "tool_calls": [{"id": "gc", "tool": "t", "input": {}}]})
        msgs.append({"role": "tool", "content": "x", "tool_call_id": "gc"})
    elif defect == "content-list":
        msgs[k] = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    elif defect == "role":
        msgs[k] = {"role": "function", "content": "x"}
    elif defect == "name":
        msgs[k] = {"role": "user", "content": "x", "name": "has spaces"}
    elif defect == "big":
        msgs[k] = {"role": "user", "content": "y" * (4 * 1024 * 1024 + 1)}
    elif defect == "calls-on-user":
        msgs[k] = {"role": "user", "content": "x", "tool_calls": [{"id": "u1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    elif defect in ("dup-key-same", "dup-key-other"):
        msgs.append({"role": "user", "content": "keyed", "idempotency_key": "k1"})
        msgs.append({"role": "user", "content": "keyed" if defect == "dup-key-same" else "other", "idempotency_key": "k1"})
    return msgs, defect


def one_by_one(c, msgs):
    """The reference: the same messages through add_message, in one transaction."""
    try:
        with c.transaction():
            cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
            for m in msgs:
                c.execute("SELECT memory.add_message(%s, %s, %s, %s, %s, %s, idempotency_key => %s)",
                          (cid, m.get("role"), m["content"] if isinstance(m.get("content"), str) else json.dumps(m["content"]) if m.get("content") else "",
                           json.dumps(m["tool_calls"]) if m.get("tool_calls") is not None else None, m.get("name"), m.get("tool_call_id"),
                           m.get("idempotency_key")))
            rows = stored(c, cid)
            raise Rollback(rows)
    except Rollback as r:
        return r.rows, None
    except psycopg.Error as e:
        return None, e.sqlstate


class Rollback(Exception):
    def __init__(self, rows):
        self.rows = rows


def stored(c, cid):
    return c.execute("""SELECT seq, role, content, name, tool_calls, tool_call_id, token_count FROM memory.conversation_messages
                         WHERE conversation_id = %s ORDER BY seq""", (cid,)).fetchall()


def test_import_accepts_and_refuses_exactly_what_add_message_does(db):
    rng = random.Random(11)
    uid = new_user()
    seen = set()
    with as_guc_user(db, uid) as c:
        for _ in range(60):
            msgs, defect = defective(rng, rng.randint(1, 25))
            content_list = any(not isinstance(m.get("content"), (str, type(None))) for m in msgs)
            want_rows, want_error = one_by_one(c, msgs)
            try:
                with c.transaction():
                    cid = rpc(c, "SELECT memory.import_conversation(%s)", json.dumps(msgs))
                    got_rows, got_error = stored(c, cid), None
                    raise Rollback(got_rows)
            except Rollback as r:
                got_rows, got_error = r.rows, None
            except psycopg.Error as e:
                got_rows, got_error = None, e.sqlstate
            if content_list:  # add_message takes text only: the import refuses what the reference would store as JSON text
                assert got_error == "22023", defect
                continue
            assert (got_rows, got_error) == (want_rows, want_error), defect
            seen.add((defect, want_error is None))
    assert len(seen) >= 10, seen


def test_a_valid_import_is_one_bulk_statement(db):
    """The bulk path writes without the per-row triggers (no NOTIFY per message); an import the
    bulk path refuses runs through the triggers (here: a retried idempotency key, which the
    per-row path skips)."""
    uid = new_user()
    listener = psycopg.connect(f"host=127.0.0.1 port={os.environ.get('MEMORY_EXT_TEST_PORT', '55433')} dbname={db} user=app", autocommit=True)
    listener.execute("LISTEN memory_messages")
    msgs = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    with as_guc_user(db, uid) as c:
        bulk = rpc(c, "SELECT memory.import_conversation(%s)", json.dumps(msgs))
        per_row = rpc(c, "SELECT memory.import_conversation(%s)", json.dumps(msgs + [{"role": "user", "content": "k", "idempotency_key": "a"},
                                                                                   {"role": "user", "content": "k", "idempotency_key": "a"}]))
        assert rpc(c, "SELECT message_count FROM memory.conversations WHERE id = %s", per_row) == 6
        assert stored(c, bulk) == stored(c, per_row)[:5]
    got = [json.loads(n.payload)["conversation_id"] for n in listener.notifies(timeout=1.0)]
    listener.close()
    assert str(bulk) not in got and got.count(str(per_row)) == 6
