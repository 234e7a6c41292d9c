"""Appends cost the same at any history length: what one append reads is counted by PostgreSQL's
own statistics (no timing), in a conversation with thousands of earlier tool calls."""
import uuid

from psycopg.types.json import Jsonb

from support.pg import connect, new_user, rpc


def reads(c):
    return c.execute("""SELECT coalesce(seq_tup_read, 0), coalesce(idx_tup_fetch, 0)
                          FROM pg_stat_xact_user_tables WHERE relid = 'memory.conversation_messages'::regclass""").fetchone()


def test_a_tool_call_append_reads_only_a_few_index_entries(db):
    with connect(db) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (new_user(),))
        c.execute("SET memory.summarize_threshold = 2000000000")
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", str(uuid.uuid4()))
        history = []
        for i in range(1500):
            history.append({"role": "assistant", "content": "", "tool_calls": [
                {"id": f"h{i}", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]})
            history.append({"role": "tool", "tool_call_id": f"h{i}", "content": f"result {i}"})
        c.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content, tool_calls, tool_call_id)
                     SELECT %s, r.role, r.content, r.tool_calls, r.tool_call_id
                       FROM jsonb_to_recordset(%s) AS r(role text, content text, tool_calls jsonb, tool_call_id text)""",
                  (cid, Jsonb(history)))
        c.execute("ANALYZE memory.conversation_messages")
        with c.transaction():
            seq0, idx0 = reads(c)
            for k in range(5):
                c.execute("""SELECT memory.add_message(%s, 'assistant', '', %s)""",
                          (cid, Jsonb([{"id": f"new{k}", "type": "function", "function": {"name": "f", "arguments": "{}"}}])))
                c.execute("SELECT memory.add_message(%s, 'tool', 'ok', tool_call_id => %s)", (cid, f"new{k}"))
            seq1, idx1 = reads(c)
        assert rpc(c, "SELECT message_count FROM memory.conversations WHERE id = %s", cid) == 3010
    # ten appends with tool calls over 3,000 earlier tool messages: no scan of the table, a handful
    # of index fetches each
    assert seq1 - seq0 == 0, f"{seq1 - seq0} rows read by sequential scans"
    assert idx1 - idx0 <= 10 * 4, f"{idx1 - idx0} rows fetched through indexes"
