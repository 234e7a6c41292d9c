"""kill -9 of the postmaster during concurrent appends, on a cluster with fsync and synchronous
commit on: every acknowledged message is there exactly once, seq has no gaps, the totals are
exact, the next append continues at last_seq + 1, and in-doubt appends retried with their
idempotency key are stored once."""
import os
import subprocess
import threading
import time
import uuid

import psycopg
import pytest

from support.pg import ROOT, TEST_ROOT, dsn

WRITERS = 8


@pytest.fixture(scope="module")
def durable(cluster):
    root, port = f"{TEST_ROOT}/crash", cluster + 4
    subprocess.run([f"{ROOT}/scripts/cluster.sh", "stop", root], check=True)
    subprocess.run(["rm", "-rf", root], check=True)
    start = [f"{ROOT}/scripts/cluster.sh", "start", root, str(port), "fsync=on", "synchronous_commit=on",
             "memory.worker_enabled=off"]
    subprocess.run(start, check=True)
    with psycopg.connect(dsn(port=port), autocommit=True) as c:
        c.execute("CREATE EXTENSION memory_ext CASCADE")
        c.execute("CREATE ROLE app LOGIN")
        c.execute("ALTER DATABASE postgres SET memory.user_id_roles = 'app'")
    yield root, port, start
    subprocess.run([f"{ROOT}/scripts/cluster.sh", "stop", root], check=True)


def app(port, user):
    c = psycopg.connect(dsn(user="app", port=port), autocommit=True, connect_timeout=5)
    c.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
    return c


def test_kill_9_during_concurrent_appends_loses_nothing(durable):
    root, port, start = durable
    user = str(uuid.uuid4())
    with app(port, user) as c:
        cids = [c.execute("SELECT (memory.create_conversation(%s)).id", (str(uuid.uuid4()),)).fetchone()[0] for _ in range(2)]
    acked, in_doubt = [], []
    lock = threading.Lock()

    def writer(w):
        cid = cids[w % 2]
        try:
            conn = app(port, user)
        except psycopg.Error:
            return
        i = 0
        while True:
            key = f"w{w}-{i}"
            content = f"writer {w} message {i} " + "word " * (i % 7)
            try:
                conn.execute("SELECT memory.add_message(%s, 'user', %s, idempotency_key => %s)", (cid, content, key))
            except psycopg.Error:
                with lock:
                    in_doubt.append((cid, content, key))
                return
            with lock:
                acked.append((cid, key))
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    with open(f"{root}/data/postmaster.pid") as f:
        os.kill(int(f.readline()), 9)
    for t in threads:
        t.join(timeout=30)
    assert len(acked) > 100, len(acked)
    t0 = time.monotonic()
    while subprocess.run(start, capture_output=True).returncode != 0:
        assert time.monotonic() - t0 < 30, "the cluster did not come back"
        time.sleep(0.3)

    with app(port, user) as c:
        # the in-doubt appends, retried: stored once whether or not their first COMMIT arrived
        for cid, content, key in in_doubt:
            c.execute("SELECT memory.add_message(%s, 'user', %s, idempotency_key => %s)", (cid, content, key))
        for cid in cids:
            rows = c.execute("SELECT seq, idempotency_key, token_count FROM memory.conversation_messages WHERE conversation_id = %s ORDER BY seq", (cid,
                                                                                                                                                    )).fetchall()
            seqs = [r[0] for r in rows]
            keys = [r[1] for r in rows]
            assert seqs == list(range(1, len(rows) + 1)), "seq has gaps or duplicates"
            assert len(set(keys)) == len(keys), "a message is stored twice"
            for acked_cid, key in acked:
                if acked_cid == cid:
                    assert key in keys, f"acknowledged message {key} lost"
            for doubt_cid, _, key in in_doubt:
                if doubt_cid == cid:
                    assert keys.count(key) == 1
            conv = c.execute("SELECT message_count, last_seq, total_tokens FROM memory.conversations WHERE id = %s", (cid,)).fetchone()
            assert conv == (len(rows), len(rows), sum(r[2] for r in rows))
            assert c.execute("SELECT (memory.add_message(%s, 'user', 'after the crash')).seq", (cid,)).fetchone()[0] == len(rows) + 1
    print(f"kill -9 during {WRITERS} concurrent writers: {len(acked)} acknowledged appends all present once, "
          f"{len(in_doubt)} in-doubt appends retried once")
