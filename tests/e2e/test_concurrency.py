"""Several real connections appending to one conversation at once: seq ends 1..N with no gaps
or duplicates, and the conversation's totals are exact."""
import threading
import uuid

from support.pg import as_guc_user, connect, new_user, rpc

WRITERS = 8
PER_WRITER = 40


def test_concurrent_appends_to_one_conversation(db):
    user = new_user()
    with as_guc_user(db, user) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", str(uuid.uuid4()))
    start = threading.Barrier(WRITERS)
    errors = []

    def writer(w):
        try:
            with as_guc_user(db, user) as c:
                start.wait()
                for i in range(PER_WRITER):
                    if i % 3 == 0:
                        # plain INSERT, as PostgREST's POST /conversation_messages does
                        c.execute("INSERT INTO memory.conversation_messages (conversation_id, role, content) VALUES (%s, 'user', %s)",
                                  (cid, f"writer {w} message {i} " + "word " * (i % 7)))
                    else:
                        c.execute("SELECT memory.add_message(%s, 'assistant', %s)", (cid, f"writer {w} reply {i}"))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors

    n = WRITERS * PER_WRITER
    with connect(db) as c:
        seqs = [r[0] for r in c.execute("SELECT seq FROM memory.conversation_messages WHERE conversation_id = %s ORDER BY seq", (cid,))]
        assert seqs == list(range(1, n + 1))
        total, count = c.execute("SELECT total_tokens, message_count FROM memory.conversations WHERE id = %s", (cid,)).fetchone()
        assert count == n
        assert total == rpc(c, "SELECT sum(token_count) FROM memory.conversation_messages WHERE conversation_id = %s", cid)
        # and every stored count is the exact framed count
        mismatches = rpc(c, """SELECT count(*) FROM memory.conversation_messages m
                               WHERE token_count <> memory.message_tokens(role, content, tool_calls, name, 'cl100k_base', tool_call_id)
                                 AND conversation_id = %s""", cid)
        assert mismatches == 0


def test_concurrent_appends_to_many_conversations(db):
    """Writers on different conversations do not block each other's totals."""
    user = new_user()
    with as_guc_user(db, user) as c:
        cids = [rpc(c, "SELECT (memory.create_conversation(%s)).id", str(uuid.uuid4())) for _ in range(4)]
    errors = []

    def writer(cid):
        try:
            with as_guc_user(db, user) as c:
                for i in range(50):
                    c.execute("SELECT memory.add_message(%s, 'user', %s)", (cid, f"m{i}"))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(cid,)) for cid in cids for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with connect(db) as c:
        for cid in cids:
            assert c.execute("SELECT message_count, (SELECT max(seq) FROM memory.conversation_messages WHERE conversation_id = %s) FROM memory.conversations WHERE id = %s",
                             (cid, cid)).fetchone() == (100, 100)
