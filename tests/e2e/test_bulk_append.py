"""Bulk appends through the triggers: a multi-row INSERT, an INSERT ... SELECT and a superuser's
COPY give every row its seq and count it exactly as single appends do, with one counter update
per conversation per statement; a bad row anywhere fails the whole statement; rows an INSERT did
not add (ON CONFLICT, idempotent retries) are not counted; concurrent bulk appends to one
conversation keep seqs contiguous."""
import json
import threading
import uuid

import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from support.pg import as_guc_user, as_jwt_user, connect, new_user, rpc

AGENT = "a0000000-0000-0000-0000-0000000b0b0b"
BULK = """INSERT INTO memory.conversation_messages (conversation_id, role, content, tool_calls, tool_call_id)
          SELECT r.conversation_id, r.role, r.content, r.tool_calls, r.tool_call_id
            FROM jsonb_to_recordset(%s) AS r(conversation_id uuid, role text, content text, tool_calls jsonb, tool_call_id text)"""


def rows(cid, n, start=0):
    out = []
    for i in range(start, start + n):
        if i % 10 == 3:
            out.append({"conversation_id": cid, "role": "assistant", "content": "",
                        "tool_calls": [{"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
        elif i % 10 == 4:
            out.append({"conversation_id": cid, "role": "tool", "content": f"result {i - 1}", "tool_call_id": f"c{i - 1}"})
        else:
            out.append({"conversation_id": cid, "role": "user" if i % 2 else "assistant", "content": f"message {i} " * (i % 7 + 1)})
    return out


def state(c, cid):
    """The conversation's counters and what its rows add up to."""
    return c.execute("""SELECT c.message_count, c.total_tokens, c.last_seq,
                               (SELECT count(*) FROM memory.conversation_messages m WHERE m.conversation_id = c.id),
                               (SELECT coalesce(sum(m.token_count), 0) FROM memory.conversation_messages m WHERE m.conversation_id = c.id),
                               (SELECT array_agg(m.seq ORDER BY m.seq) FROM memory.conversation_messages m WHERE m.conversation_id = c.id)
                          FROM memory.conversations c WHERE c.id = %s""", (cid,)).fetchone()


def assert_exact(c, cid, n):
    count, total, last, real_count, real_total, seqs = state(c, cid)
    assert (count, real_count, last) == (n, n, n)
    assert total == real_total
    assert seqs == list(range(1, n + 1)) or (n == 0 and seqs is None)


@pytest.mark.parametrize("mode", [as_guc_user, as_jwt_user], ids=["login", "postgrest"])
def test_insert_select_counts_and_orders_like_single_appends(db, mode):
    uid = new_user()
    with mode(db, uid) as c:
        bulk = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        single = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        c.execute(BULK, (Jsonb(rows(str(bulk), 500)),))
        for r in rows(str(single), 500):
            c.execute("SELECT memory.add_message(%s, %s, %s, %s, tool_call_id => %s)",
                      (single, r["role"], r["content"], Jsonb(r.get("tool_calls")) if r.get("tool_calls") else None,
                       r.get("tool_call_id")))
        assert_exact(c, bulk, 500)
        # the same rows, the same seqs and counts as one append at a time
        a, b = (c.execute("""SELECT array_agg((seq, role, content, token_count) ORDER BY seq)::text
                               FROM memory.conversation_messages WHERE conversation_id = %s""", (x,)).fetchone()[0]
                for x in (bulk, single))
        assert a == b
        assert state(c, bulk)[1] == state(c, single)[1]
        ctx = rpc(c, "SELECT memory.build_context(%s, 100000)", bulk)
        assert len(ctx["messages"]) == 500
        # a second bulk statement continues after the first
        c.execute(BULK, (Jsonb(rows(str(bulk), 20, start=500)),))
        assert_exact(c, bulk, 520)


def test_one_statement_into_several_conversations_interleaved(db):
    with as_guc_user(db, new_user()) as c:
        cids = [str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)) for _ in range(3)]
        per = [rows(cid, 40) for cid in cids]
        interleaved = [per[k % 3][k // 3] for k in range(120)]
        c.execute(BULK, (Jsonb(interleaved),))
        for cid in cids:
            assert_exact(c, cid, 40)
            assert c.execute("SELECT array_agg(content ORDER BY seq) FROM memory.conversation_messages WHERE conversation_id = %s",
                             (cid,)).fetchone()[0] == [r["content"] for r in per[cids.index(cid)]]


@pytest.mark.parametrize("bad", [
    {"role": "robot", "content": "x"},                                  # invalid role
    {"role": "tool", "content": "x", "tool_call_id": "nobody-called"},  # a result without its call
    {"role": "tool", "content": "again", "tool_call_id": "c3"},         # a second result for c3
    {"role": "assistant", "content": "", "tool_calls": [{"id": "c3", "type": "function",
                                                         "function": {"name": "f", "arguments": "{}"}}]},  # call id reused
], ids=["role", "orphan-result", "second-result", "duplicate-call"])
def test_a_bad_row_fails_the_whole_statement(db, bad):
    with as_guc_user(db, new_user()) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
        c.execute(BULK, (Jsonb(rows(cid, 10)),))
        before = state(c, cid)
        batch = rows(cid, 30, start=10)
        batch.insert(17, dict(bad, conversation_id=cid))
        with pytest.raises((errors.InvalidParameterValue, errors.CheckViolation)):
            c.execute(BULK, (Jsonb(batch),))
        assert state(c, cid) == before
        c.execute(BULK, (Jsonb(rows(cid, 5, start=10)),))
        assert_exact(c, cid, 15)


def test_a_row_for_another_users_conversation_fails_the_statement(db):
    with as_guc_user(db, new_user()) as other:
        theirs = str(rpc(other, "SELECT (memory.create_conversation(%s)).id", AGENT))
    with as_jwt_user(db, new_user()) as c:
        mine = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
        batch = rows(mine, 5) + [{"conversation_id": theirs, "role": "user", "content": "intrusion"}]
        with pytest.raises(errors.NoDataFound):
            with c.transaction():
                c.execute(BULK, (Jsonb(batch),))
    with connect(db) as su:
        assert_exact(su, mine, 0)
        assert_exact(su, theirs, 0)


def test_rows_an_insert_does_not_add_are_not_counted(db):
    """ON CONFLICT DO NOTHING on an existing id, and an idempotent retry inside a bulk insert:
    the counters count the rows that were stored, nothing else."""
    with as_guc_user(db, new_user()) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
        first = rpc(c, "SELECT (memory.add_message(%s, 'user', 'hello', idempotency_key => 'k1')).id", cid)
        c.execute("""INSERT INTO memory.conversation_messages (id, conversation_id, role, content)
                     VALUES (%s, %s, 'user', 'a clash') ON CONFLICT (id) DO NOTHING""", (first, cid))
        c.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content, idempotency_key)
                     VALUES (%s, 'user', 'hello', 'k1'), (%s, 'assistant', 'hi', 'k2')""", (cid, cid))
        assert_exact(c, cid, 2)
        assert c.execute("SELECT array_agg(content ORDER BY seq) FROM memory.conversation_messages WHERE conversation_id = %s",
                         (cid,)).fetchone()[0] == ["hello", "hi"]


def test_seqs_continue_above_a_rewind(db):
    with as_guc_user(db, new_user()) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
        c.execute(BULK, (Jsonb(rows(cid, 10)),))
        c.execute("SELECT memory.rewind_conversation(%s, 6)", (cid,))
        c.execute(BULK, (Jsonb(rows(cid, 2, start=20)),))
        count, total, last, real_count, real_total, seqs = state(c, cid)
        assert (count, real_count, last, total) == (8, 8, 12, real_total)
        assert seqs == [1, 2, 3, 4, 5, 6, 11, 12]


def test_superuser_copy_goes_through_the_triggers(db):
    with as_guc_user(db, new_user()) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
    with connect(db) as su:
        with su.cursor().copy("COPY memory.conversation_messages (conversation_id, role, content) FROM STDIN") as cp:
            for i in range(1000):
                cp.write_row((cid, "user" if i % 2 == 0 else "assistant", f"copied {i}"))
        assert_exact(su, cid, 1000)
        with pytest.raises((errors.InvalidParameterValue, errors.CheckViolation)):
            with su.cursor().copy("COPY memory.conversation_messages (conversation_id, role, content) FROM STDIN") as cp:
                cp.write_row((cid, "user", "fine"))
                cp.write_row((cid, "wizard", "not a role"))
        assert_exact(su, cid, 1000)


def test_one_notification_per_row_and_one_summary_job(db):
    uid = new_user()
    with connect(db) as listener, as_guc_user(db, uid) as c:
        listener.execute("LISTEN memory_messages")
        c.execute("SET memory.summarize_threshold = 1000")
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
        c.execute(BULK, (Jsonb([{"conversation_id": cid, "role": "user", "content": "word " * 100} for _ in range(50)]),))
        got = [json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=50)]
        assert [(g["conversation_id"], g["seq"]) for g in got] == [(cid, s) for s in range(1, 51)]
        ids = {str(r[0]) for r in c.execute("SELECT id FROM memory.conversation_messages WHERE conversation_id = %s", (cid,))}
        assert {g["id"] for g in got} == ids
    with connect(db) as su:
        assert su.execute("SELECT count(*) FROM memory.jobs WHERE conversation_id = %s AND kind = 'summary'",
                          (cid,)).fetchone()[0] == 1


def test_concurrent_bulk_appends_to_one_conversation(db):
    uid = new_user()
    with as_guc_user(db, uid) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
    errs = []

    def writer(k):
        try:
            with as_guc_user(db, uid) as c:
                for j in range(10):
                    c.execute(BULK, (Jsonb([{"conversation_id": cid, "role": "user", "content": f"w{k} b{j} r{i}"}
                                            for i in range(25)]),))
        except Exception as e:  # noqa: BLE001 - reported below
            errs.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errs == []
    with connect(db) as su:
        assert_exact(su, cid, 1000)
        # each statement's 25 rows got consecutive seqs (the conversation is locked per statement)
        runs = su.execute("""SELECT count(DISTINCT split_part(content, ' r', 1)) FROM (
                               SELECT content, (seq - 1) / 25 AS block FROM memory.conversation_messages
                                WHERE conversation_id = %s) x GROUP BY block""", (cid,)).fetchall()
        assert {r[0] for r in runs} == {1}


def test_on_conflict_do_update_changes_metadata_only_and_counts_nothing(db):
    """INSERT ... ON CONFLICT (id) DO UPDATE on a stored message is an update, not an append: its
    metadata may change, its counters and seq stay, and its text stays append-only (0A000); a row
    of the same statement form that does not conflict is appended and counted."""
    with as_guc_user(db, new_user()) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
        first = rpc(c, "SELECT (memory.add_message(%s, 'user', 'hello')).id", cid)
        upsert = """INSERT INTO memory.conversation_messages (id, conversation_id, role, content) VALUES (%s, %s, 'user', %s)
                    ON CONFLICT (id) DO UPDATE SET {} RETURNING seq, content, metadata"""
        assert c.execute(upsert.format("metadata = '{\"tag\": 1}'"), (first, cid, "other")).fetchone() == (1, "hello", {"tag": 1})
        assert_exact(c, cid, 1)
        with pytest.raises(errors.FeatureNotSupported), c.transaction():
            c.execute(upsert.format("content = 'changed'"), (first, cid, "other"))
        assert rpc(c, "SELECT content FROM memory.conversation_messages WHERE id = %s", first) == "hello"
        new_id = str(uuid.uuid4())
        assert c.execute(upsert.format("metadata = '{\"tag\": 2}'"), (new_id, cid, "two")).fetchone() == (2, "two", None)
        assert_exact(c, cid, 2)


def test_a_rolled_back_savepoint_leaves_no_trace(db):
    """Appends inside a savepoint that rolls back (single, bulk, and a statement that fails on its
    third row) leave no seq, counter, daily figure or notification behind: the transaction's later
    append takes the next seq as if they had never run."""
    with connect(db) as listener, as_guc_user(db, new_user()) as c:
        listener.execute("LISTEN memory_messages")
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
        with c.transaction():
            c.execute("SELECT memory.add_message(%s, 'user', 'kept 1')", (cid,))
            with pytest.raises(RuntimeError), c.transaction():
                c.execute("SELECT memory.add_message(%s, 'user', 'undone')", (cid,))
                c.execute(BULK, (Jsonb(rows(cid, 5, start=1)),))
                raise RuntimeError("roll back the savepoint")
            with pytest.raises(errors.InvalidParameterValue), c.transaction():
                c.execute(BULK, (Jsonb([{"conversation_id": cid, "role": "user", "content": "a"},
                                        {"conversation_id": cid, "role": "assistant", "content": "b"},
                                        {"conversation_id": cid, "role": "tool", "content": "no call", "tool_call_id": "nope"}]),))
            c.execute("SELECT memory.add_message(%s, 'assistant', 'kept 2')", (cid,))
        assert_exact(c, cid, 2)
        assert rpc(c, "SELECT array_agg(content ORDER BY seq) FROM memory.conversation_messages WHERE conversation_id = %s",
                   cid) == ["kept 1", "kept 2"]
        assert rpc(c, "SELECT sum(messages) FROM memory.message_days WHERE conversation_id = %s", cid) == 2
        got = [json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=3)]
        assert [(g["conversation_id"], g["seq"]) for g in got] == [(cid, 1), (cid, 2)]


# A statement asks once per conversation whether the caller may write it and what its next seq is
# (the Rust row triggers keep a frame per INSERT statement). These hold that cache to what a
# per-row check gave.

def test_a_statement_nested_in_a_bulk_insert_shares_the_seqs(db):
    """An INSERT whose SELECT appends to the same conversation (memory.add_message per row): each
    nested append takes the next seq, and the outer statement's rows continue after it."""
    with as_guc_user(db, new_user()) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
        c.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content)
                     SELECT %s, 'assistant', 'outer ' || g || ' after ' ||
                            (SELECT (memory.add_message(%s, 'user', 'inner ' || g)).seq)
                       FROM generate_series(1, 4) g""", (cid, cid))
        assert_exact(c, cid, 8)
        got = c.execute("SELECT array_agg(content ORDER BY seq) FROM memory.conversation_messages WHERE conversation_id = %s",
                        (cid,)).fetchone()[0]
        assert got == [x for g in range(1, 5) for x in (f"inner {g}", f"outer {g} after {2 * g - 1}")]


def test_a_rolled_back_append_inside_a_bulk_insert_leaves_no_gap(db):
    """A function in the INSERT's SELECT appends in an exception block that rolls back: its rows
    and its seqs are gone, and the outer rows are numbered as if it had never run."""
    with as_guc_user(db, new_user()) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
        c.execute("""CREATE FUNCTION pg_temp.doomed_append(cid uuid) RETURNS text LANGUAGE plpgsql AS $$
                     BEGIN
                         BEGIN
                             PERFORM memory.add_message(cid, 'user', 'doomed');
                             RAISE EXCEPTION 'undo';
                         EXCEPTION WHEN raise_exception THEN NULL;
                         END;
                         RETURN 'kept';
                     END $$""")
        c.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content)
                     SELECT %s, 'user', pg_temp.doomed_append(%s) || ' ' || g FROM generate_series(1, 3) g""", (cid, cid))
        assert_exact(c, cid, 3)
        assert rpc(c, "SELECT array_agg(content ORDER BY seq) FROM memory.conversation_messages WHERE conversation_id = %s",
                   cid) == ["kept 1", "kept 2", "kept 3"]


def test_changing_identity_halfway_through_a_statement_is_checked_again(db):
    """The access check is cached for the identity that asked: a statement whose rows switch
    memory.user_id to someone without access to the conversation fails at that row (P0002, as
    for any conversation one cannot see), and stores nothing."""
    owner, stranger = new_user(), new_user()
    with as_guc_user(db, owner) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
        with pytest.raises(errors.NoDataFound), c.transaction():
            c.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content)
                         SELECT %s, 'user', 'row ' || g || set_config('memory.user_id', CASE WHEN g = 2 THEN %s ELSE %s END, false)
                           FROM generate_series(1, 3) g""", (cid, stranger, owner))
        c.execute("SELECT set_config('memory.user_id', %s, false)", (owner,))
        assert_exact(c, cid, 0)


def test_an_editor_who_loses_access_is_refused_in_the_next_statement(db):
    """The cache lasts one statement: an editor removed between two statements of one transaction
    cannot append in the second."""
    owner, editor = new_user(), new_user()
    with as_guc_user(db, owner) as o:
        cid = str(rpc(o, "SELECT (memory.create_conversation(%s)).id", AGENT))
        o.execute("SELECT memory.share_conversation(%s, %s, 'editor')", (cid, editor))
    with as_guc_user(db, editor) as e:
        e.execute("SELECT memory.accept_shares(conversation_id => %s)", (cid,))
        with e.transaction():
            e.execute(BULK, (Jsonb(rows(cid, 3)),))
            with as_guc_user(db, owner) as o:
                o.execute("SELECT memory.unshare_conversation(%s, %s)", (cid, editor))
            with pytest.raises(errors.NoDataFound), e.transaction():
                e.execute(BULK, (Jsonb(rows(cid, 3, start=3)),))
    with connect(db) as su:
        assert_exact(su, cid, 3)


def summary_jobs(cid):
    return "SELECT count(*) FROM memory.jobs WHERE kind = 'summary' AND conversation_id = '%s'" % cid


@pytest.mark.parametrize("nested", [False, True], ids=["one statement", "after a nested append"])
def test_a_summary_is_queued_when_any_row_of_a_statement_crosses_the_threshold(db, nested):
    """A statement's rows carry the conversation's running total: a summary is queued when a later
    row of a multi-row insert crosses memory.summarize_threshold (default 6,000 tokens), with the
    conversation counted by the first row's lock or, after a nested statement wrote to it, read
    under the lock again; never while the total stays below it."""
    with as_guc_user(db, new_user()) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
        small = [{"conversation_id": cid, "role": "user", "content": "a short one"} for _ in range(3)]
        c.execute(BULK, (Jsonb(small),))
        with connect(db) as su:
            assert su.execute(summary_jobs(cid)).fetchone()[0] == 0
        long = [{"conversation_id": cid, "role": "user" if i % 2 else "assistant", "content": "lorem ipsum " * 600}
                for i in range(8)]
        if nested:
            # the second row's SELECT appends to the same conversation in a statement of its own,
            # after the first row was stored
            c.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content)
                         SELECT %s, r.role, r.content || CASE WHEN r.n = 2 THEN
                                    (SELECT '' FROM memory.add_message(%s, 'user', 'nested')) ELSE '' END
                           FROM ROWS FROM (jsonb_to_recordset(%s) AS (role text, content text)) WITH ORDINALITY
                                AS r(role, content, n)""",
                      (cid, cid, Jsonb(long)))
        else:
            c.execute(BULK, (Jsonb(long),))
        total = rpc(c, "SELECT total_tokens FROM memory.conversations WHERE id = %s", cid)
        assert total > 6000
        assert_exact(c, cid, 3 + len(long) + (1 if nested else 0))
        with connect(db) as su:
            assert su.execute(summary_jobs(cid)).fetchone()[0] == 1
