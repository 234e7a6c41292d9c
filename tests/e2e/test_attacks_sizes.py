"""memory.max_message_size bounds everything users store, as an attacker with an ordinary login or
through PostgREST would try it: message metadata (on insert, on update by an editor, in an
import), a conversation's title and metadata, a template row. In 0.2.0 only content and tool calls
counted: 20 MB of metadata was stored, an editor's 60 MB on five messages made the owner's
conversation unreadable, and a 209 MB template row was accepted. Refused values change nothing."""
import json

import pytest
from psycopg import errors

from support.pg import as_guc_user, as_jwt_user, connect, new_user, rpc

AGENT = "a0000000-0000-0000-0000-00000000512e"
MODES = pytest.mark.parametrize("mode", [as_guc_user, as_jwt_user], ids=["login", "postgrest"])
BIG = json.dumps({"blob": "x" * 80_000})  # over the module's 64 kB limit


@pytest.fixture(scope="module")
def small(db):
    with connect(db) as c:
        c.execute(f"ALTER DATABASE {db} SET memory.max_message_size = '64kB'")
    yield db
    with connect(db) as c:
        c.execute(f"ALTER DATABASE {db} RESET memory.max_message_size")


def conversation(db, owner):
    with as_guc_user(db, owner) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s, 'sized')).id", AGENT))
        c.execute("SELECT memory.add_message(%s, 'user', 'hello')", (cid,))
    return cid


@MODES
def test_message_metadata_counts_on_insert_update_and_import(small, mode):
    owner, editor = new_user(), new_user()
    cid = conversation(small, owner)
    with as_guc_user(small, owner) as c:
        c.execute("SELECT memory.share_conversation(%s, %s, 'editor')", (cid, editor))
    with mode(small, editor) as c:
        with pytest.raises(errors.ProgramLimitExceeded):
            c.execute("SELECT memory.add_message(%s, 'user', 'hi', metadata => %s)", (cid, BIG))
    with mode(small, editor) as c:
        with pytest.raises(errors.ProgramLimitExceeded):
            c.execute("UPDATE memory.conversation_messages SET metadata = %s WHERE conversation_id = %s", (BIG, cid))
    with mode(small, owner) as c:
        with pytest.raises(errors.ProgramLimitExceeded):
            c.execute("SELECT memory.import_conversation(%s)",
                      (json.dumps([{"role": "user", "content": "hi", "metadata": json.loads(BIG)}]),))
    with connect(small) as c:
        rows = c.execute("SELECT count(*), max(pg_column_size(metadata)) FROM memory.conversation_messages WHERE conversation_id = %s",
                         (cid,)).fetchone()
    assert rows[0] == 1 and (rows[1] or 0) < 1000
    with mode(small, editor) as c:  # a small update still works
        c.execute("UPDATE memory.conversation_messages SET metadata = '{\"ok\": true}' WHERE conversation_id = %s", (cid,))


@MODES
def test_a_conversations_title_and_metadata_are_bounded(small, mode):
    owner = new_user()
    with mode(small, owner) as c:
        with pytest.raises(errors.ProgramLimitExceeded):
            c.execute("SELECT memory.create_conversation(%s, 'big', %s)", (AGENT, BIG))
    with mode(small, owner) as c:
        with pytest.raises(errors.ProgramLimitExceeded):
            c.execute("INSERT INTO memory.conversations (agent_id, title) VALUES (%s, %s)", (AGENT, "t" * 80_000))
    cid = conversation(small, owner)
    with mode(small, owner) as c:
        with pytest.raises(errors.ProgramLimitExceeded):
            c.execute("UPDATE memory.conversations SET metadata = %s WHERE id = %s", (BIG, cid))
    with connect(small) as c:
        assert c.execute("SELECT count(*) FROM memory.conversations WHERE user_id = %s", (owner,)).fetchone()[0] == 1


@MODES
def test_a_template_row_is_bounded(small, mode):
    owner = new_user()
    with mode(small, owner) as c:
        with pytest.raises(errors.ProgramLimitExceeded):
            c.execute("INSERT INTO memory.conversation_templates (name, messages) VALUES ('huge', %s)",
                      (json.dumps([{"role": "user", "content": "y" * 1000}] * 100),))
    with connect(small) as c:
        assert c.execute("SELECT count(*) FROM memory.conversation_templates WHERE user_id = %s", (owner,)).fetchone()[0] == 0
