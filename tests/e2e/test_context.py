"""build_context on stored conversations: agrees with build_context_from on the same messages,
is read-only (works in a READ ONLY transaction and on a hot standby), and reads only the window."""
import json
import os
import random
import subprocess
import time
import uuid

import psycopg
import pytest

from support.pg import BIN, ROOT, TEST_ROOT, as_guc_user, connect, dsn, new_user, rpc

AGENT = str(uuid.uuid4())


def random_conversation(rng, n):
    msgs, pending, k = [], [], 0
    def words():
        return " ".join(rng.choice(["alpha", "beta", "gamma", "code", "{\"x\": 1}", "日本", "😀", "\n"]) for _ in range(rng.randint(0, 80)))
    while len(msgs) < n:
        r = rng.random()
        if r < 0.35:
            msgs.append({"role": "user", "content": words()})
        elif r < 0.6:
            msgs.append({"role": "assistant", "content": words()})
        elif r < 0.7:
            ids = []
            for _ in range(rng.randint(1, 3)):
                k += 1
                ids.append(f"call_{k}")
            msgs.append({"role": "assistant", "content": rng.choice(["", "checking"]), "tool_calls": [
                {"id": i, "type": "function", "function": {"name": "lookup", "arguments": json.dumps({"q": i})}} for i in ids]})
            pending.extend(ids)
        elif r < 0.85 and pending:
            msgs.append({"role": "tool", "tool_call_id": pending.pop(rng.randrange(len(pending))), "content": words()})
        elif r < 0.92:
            k += 1
            msgs.append({"role": "assistant", "content": "", "tool_calls": [{"id": f"g{k}", "tool": "calc", "input": {"n": k}, "output": words()}]})
        else:
            msgs.append({"role": "system", "content": words()})
    return msgs


def store(c, msgs, encoding="cl100k_base"):
    cid = rpc(c, "SELECT (memory.create_conversation(%s, encoding => %s)).id", AGENT, encoding)
    for m in msgs:
        c.execute("SELECT memory.add_message(%s, %s, %s, %s, %s, %s)",
                  (cid, m["role"], m["content"], json.dumps(m["tool_calls"]) if "tool_calls" in m else None, m.get("name"), m.get("tool_call_id")))
    return cid


def test_stored_and_given_agree(db):
    rng = random.Random(42)
    user = new_user()
    with as_guc_user(db, user) as c:
        for case in range(60):
            msgs = random_conversation(rng, rng.randint(1, 40))
            encoding = rng.choice(["cl100k_base", "o200k_base", "chars4"])
            cid = store(c, msgs, encoding)
            for budget in (30, 120, 400, 2000, 100000):
                system = rng.choice([None, "You are a careful assistant."])
                try:
                    stored = rpc(c, "SELECT memory.build_context(%s, %s, %s)", cid, budget, system)
                except psycopg.errors.InvalidParameterValue:
                    with pytest.raises(psycopg.errors.InvalidParameterValue):
                        c.execute("SELECT memory.build_context_from(%s, %s, %s, %s)", (json.dumps(msgs), budget, system, encoding))
                    continue
                given = rpc(c, "SELECT memory.build_context_from(%s, %s, %s, %s)", json.dumps(msgs), budget, system, encoding)
                assert stored == given, f"case {case} budget {budget}"
                assert stored["token_count"] == rpc(c, "SELECT memory.count_message_tokens(%s, %s)", json.dumps(stored["messages"]), encoding)
                assert stored["overflow"] or stored["token_count"] <= budget


def test_read_only_transaction(db):
    user = new_user()
    with as_guc_user(db, user) as c:
        cid = store(c, random_conversation(random.Random(1), 30))
        with c.transaction():
            c.execute("SET TRANSACTION READ ONLY")
            ctx = rpc(c, "SELECT memory.build_context(%s, 500)", cid)
            assert ctx["included_messages"] > 0
            # and no transaction id was taken
            assert rpc(c, "SELECT pg_current_xact_id_if_assigned()") is None


def test_reads_only_the_window(db):
    """On a long conversation, the plan's buffer reads stay those of the window, not the history."""
    user = new_user()
    with as_guc_user(db, user) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        c.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content, seq, token_count)
                     SELECT %s, CASE WHEN i %% 2 = 0 THEN 'user' ELSE 'assistant' END,
                            'message number ' || i || ' ' || repeat('lorem ipsum ', 20), 0, 0
                       FROM generate_series(1, 5000) i""", (cid,))
        c.execute("ANALYZE memory.conversation_messages")
    fetched = "SELECT idx_tup_fetch + coalesce(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relname = 'conversation_messages'"
    with connect(db) as admin:
        admin.execute("SELECT pg_stat_clear_snapshot()")
        before = rpc(admin, fetched)
    # a fresh session whose statistics are flushed when it ends
    with as_guc_user(db, user) as c:
        ctx = rpc(c, "SELECT memory.build_context(%s, 2000)", cid)
    assert 20 < ctx["included_messages"] < 60
    assert ctx["omitted_messages"] == 5000 - ctx["included_messages"]
    with connect(db) as admin:
        for _ in range(50):
            admin.execute("SELECT pg_stat_clear_snapshot()")
            read = rpc(admin, fetched) - before
            if read:
                break
            time.sleep(0.1)
    # the window's rows plus the look-ahead of the last batch, not the 5000 of the history
    assert ctx["included_messages"] < read <= 2 * ctx["included_messages"] + 20, read


def test_hot_standby(db, cluster):
    """A real streaming replica (pg_basebackup -R): build_context works there."""
    user = new_user()
    with as_guc_user(db, user) as c:
        cid = store(c, random_conversation(random.Random(5), 25))
        expected = rpc(c, "SELECT memory.build_context(%s, 600, 'sys')", cid)
    replica = f"{TEST_ROOT}/replica"
    port = cluster + 1
    subprocess.run([f"{ROOT}/scripts/cluster.sh", "stop", replica], check=True)
    subprocess.run(["rm", "-rf", replica], check=True)
    os.makedirs(replica)
    subprocess.run(["chown", "postgres", replica], check=False)
    as_pg = ["sudo", "-u", "postgres"] if os.getuid() == 0 else []
    subprocess.run(as_pg + [f"{BIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(cluster), "-U", "postgres",
                            "-D", f"{replica}/data", "-R", "-X", "stream", "-c", "fast"], check=True)
    subprocess.run(as_pg + ["mkdir", "-p", f"{replica}/sock"], check=True)
    subprocess.run([f"{ROOT}/scripts/cluster.sh", "start", replica, str(port), "hot_standby=on"], check=True)
    try:
        with psycopg.connect(dsn(db, "app", port), autocommit=True) as r:
            assert rpc(r, "SELECT pg_is_in_recovery()") is True
            r.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
            assert rpc(r, "SELECT memory.build_context(%s, 600, 'sys')", cid) == expected
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                r.execute("SELECT memory.add_message(%s, 'user', 'x')", (cid,))
    finally:
        subprocess.run([f"{ROOT}/scripts/cluster.sh", "stop", replica], check=True)
