"""Idempotent appends: a client that retries after losing the connection around COMMIT sends the
same idempotency_key again and gets the stored message, never a duplicate."""
import threading
import uuid

import pytest
from psycopg import errors

from support.pg import as_guc_user, as_jwt_user, connect, new_user, rpc

AGENT = str(uuid.uuid4())


def counts(db, cid):
    with connect(db) as c:
        return c.execute("SELECT message_count, last_seq, total_tokens, (SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s) FROM memory.conversations WHERE id = %s", (cid, cid)).fetchone()


@pytest.mark.parametrize("mode", [as_guc_user, as_jwt_user], ids=["login", "postgrest"])
def test_a_retry_returns_the_stored_message(db, mode):
    user = new_user()
    with mode(db, user) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        first = c.execute("SELECT id, seq FROM memory.add_message(%s, 'user', 'book a table', idempotency_key => 'k-1')", (cid,)).fetchone()
    before = counts(db, cid)
    with mode(db, user) as c:
        again = c.execute("SELECT id, seq FROM memory.add_message(%s, 'user', 'book a table', idempotency_key => 'k-1')", (cid,)).fetchone()
        assert again == first
        # a plain INSERT (PostgREST POST /conversation_messages) retried: nothing new is written
        n = c.execute("INSERT INTO memory.conversation_messages (conversation_id, role, content, idempotency_key) VALUES (%s, 'user', 'book a table', 'k-1')", (cid,)).rowcount
        assert n == 0
    assert counts(db, cid) == before
    # the same key with another message is an error, and changes nothing
    with pytest.raises(errors.UniqueViolation) as e:
        with mode(db, user) as c:
            c.execute("SELECT memory.add_message(%s, 'user', 'book two tables', idempotency_key => 'k-1')", (cid,))
    assert "already used for a different message (seq 1)" in str(e.value)
    assert counts(db, cid) == before
    # keys are per conversation, and a new key appends
    with mode(db, user) as c:
        other = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        assert rpc(c, "SELECT (memory.add_message(%s, 'user', 'book a table', idempotency_key => 'k-1')).seq", other) == 1
        assert rpc(c, "SELECT (memory.add_message(%s, 'assistant', 'done', idempotency_key => 'k-2')).seq", cid) == 2
        # the key is part of the stored message, which stays append-only
        with pytest.raises(errors.FeatureNotSupported):
            c.execute("UPDATE memory.conversation_messages SET idempotency_key = 'k-9' WHERE conversation_id = %s AND seq = 1", (cid,))


def test_concurrent_retries_store_one_message(db):
    user = new_user()
    with as_guc_user(db, user) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
    results, errs = [], []

    def retry():
        try:
            with as_guc_user(db, user) as c:
                results.append(c.execute("SELECT id, seq FROM memory.add_message(%s, 'user', 'same append', idempotency_key => 'race')", (cid,)).fetchone())
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errs.append(e)

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errs == [] and len(set(results)) == 1 and results[0][1] == 1
    assert counts(db, cid)[:2] == (1, 1)


def test_bad_keys(db):
    with as_guc_user(db, new_user()) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        for key in ("", "k" * 201):
            with pytest.raises(errors.CheckViolation):
                c.execute("SELECT memory.add_message(%s, 'user', 'x', idempotency_key => %s)", (cid, key))
        assert counts(db, cid)[0] == 0
