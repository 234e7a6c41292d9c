"""Without shared_preload_libraries every SQL function still works (the library loads on first
use); only the worker and the shared tokenizer tables are missing."""
import subprocess
import time
import uuid

import psycopg
from psycopg.types.json import Jsonb

from support.pg import ROOT, TEST_ROOT, dsn


def test_everything_works_without_preload(cluster):
    root, port = f"{TEST_ROOT}/plain", cluster + 3
    subprocess.run([f"{ROOT}/scripts/cluster.sh", "stop", root], check=True)
    subprocess.run(["rm", "-rf", root], check=True)
    subprocess.run(["env", "NO_PRELOAD=1", f"{ROOT}/scripts/cluster.sh", "start", root, str(port)], check=True)
    try:
        with psycopg.connect(dsn(port=port), autocommit=True) as c:
            c.execute("CREATE EXTENSION memory_ext CASCADE")
            c.execute("CREATE ROLE app LOGIN")
            c.execute("ALTER DATABASE postgres SET memory.user_id_roles = 'app'")
        with psycopg.connect(dsn(user="app", port=port), autocommit=True) as c:
            t = time.perf_counter()
            assert c.execute("SELECT memory.estimate_tokens('hello world')").fetchone()[0] == 2
            first_ms = (time.perf_counter() - t) * 1000
            c.execute(f"SET memory.user_id = '{uuid.uuid4()}'")
            cid = c.execute("SELECT (memory.create_conversation(gen_random_uuid())).id").fetchone()[0]
            c.execute("SELECT memory.add_message(%s, 'user', 'hi')", (cid,))
            ctx = c.execute("SELECT memory.build_context(%s, 100, 'sys')", (cid,)).fetchone()[0]
            assert ctx["included_messages"] == 1
            assert ctx["token_count"] == c.execute("SELECT memory.count_message_tokens(%s)", (Jsonb(ctx["messages"]),)).fetchone()[0]
            # the queue still fills; only the worker is absent
            assert c.execute("SELECT memory.request_summary(%s)", (cid,)).fetchone()[0] > 0
            assert c.execute("SELECT memory.summary_status(%s)->'job'->>'status'", (cid,)).fetchone()[0] == "queued"
            assert c.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'memory_ext worker'").fetchone()[0] == 0
        print(f"first estimate_tokens in a new connection without preload: {first_ms:.1f} ms")
    finally:
        subprocess.run([f"{ROOT}/scripts/cluster.sh", "stop", root], check=True)
