"""pg_dump keeps the user data of the extension's tables (registered with
pg_extension_config_dump), and a restore gives back the same conversations, counters and
summaries and daily figures, with identity sequences that continue after the restored ids."""
import subprocess
import uuid

from support.pg import BIN, PORT, connect, new_user, rpc


def test_dump_and_restore(db):
    user = new_user()
    with connect(db, "app") as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
        cid = rpc(c, "SELECT (memory.create_conversation(%s, 'dumped')).id", str(uuid.uuid4()))
        for i in range(12):
            c.execute("SELECT memory.add_message(%s, %s, %s)", (cid, "user" if i % 2 == 0 else "assistant", f"message {i} " + "word " * 40))
        c.execute("""SELECT memory.add_message(%s, 'assistant', '', '[{"id":"k1","type":"function","function":{"name":"f","arguments":"{}"}}]')""", (cid,))
        c.execute("SELECT memory.add_message(%s, 'tool', 'ok', tool_call_id => 'k1')", (cid,))
        c.execute("INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model) VALUES (%s, 6, 'six messages', 'manual')",
                  (cid,))
        before = rpc(c, "SELECT memory.build_context(%s, 300)", cid)
        conv_before = c.execute("SELECT total_tokens, message_count, last_seq FROM memory.conversations WHERE id = %s", (cid,)).fetchone()
        activity = "SELECT day, messages, tokens, last_activity FROM memory.conversation_activity WHERE conversation_id = %s"
        activity_before = c.execute(activity, (cid,)).fetchall()
    dump = subprocess.run([f"{BIN}/pg_dump", "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", db],
                          capture_output=True, text=True, check=True).stdout
    assert "COPY memory.conversation_messages" in dump
    target = db + "_restored"
    with connect("postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {target}")
        c.execute(f"CREATE DATABASE {target}")
        c.execute(f"ALTER DATABASE {target} SET memory.user_id_roles = 'app'")
    # The insert triggers assign seq and counters; a restore must keep the dumped ones, so it runs
    # with session_replication_role = replica (as the README says).
    subprocess.run([f"{BIN}/psql", "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", "-d", target, "-q", "-v", "ON_ERROR_STOP=1"],
                   input=dump, text=True, check=True, capture_output=True,
                   env={"PGOPTIONS": "-c session_replication_role=replica", "PATH": "/usr/bin:/bin"})
    with connect(target, "app") as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
        assert rpc(c, "SELECT memory.build_context(%s, 300)", cid) == before
        assert c.execute("SELECT total_tokens, message_count, last_seq FROM memory.conversations WHERE id = %s", (cid,)).fetchone() == conv_before
        # the analytics' daily figures come with the dump (the restore ran no trigger to count them)
        assert c.execute(activity, (cid,)).fetchall() == activity_before != []
        # new writes continue where the dump left off
        assert rpc(c, "SELECT (memory.add_message(%s, 'user', 'after restore')).seq", cid) == conv_before[2] + 1
        c.execute("INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model) VALUES (%s, 10, 'ten', 'manual')", (cid,))
        assert rpc(c, "SELECT count(*) FROM memory.conversation_summaries") == 2
