"""The summary worker end to end: a cluster of its own with the library preloaded, the worker
calling a fake OpenAI-compatible server on 127.0.0.1."""
import os
import re
import subprocess
import time
import uuid

import psycopg
import pytest

from support.pg import ROOT, TEST_ROOT, dsn, llm_cluster, wait_for

API_KEY = "sk-test-4f9a1c2b7e"
TIMEOUT_MS = 1500
BACKOFF_MS = 300
MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def wk(cluster, llm):
    """A cluster whose worker calls the fake LLM; yields its port."""
    settings = {"memory.llm_base_url": f"http://127.0.0.1:{llm.port}/v1", "memory.llm_model": "fake-model",
                "memory.llm_timeout": TIMEOUT_MS, "memory.retry_backoff": BACKOFF_MS, "memory.max_attempts": MAX_ATTEMPTS,
                "memory.summary_max_tokens": 77, "memory.summary_keep_tokens": 40, "memory.worker_naptime": 100,
                "memory.summarize_threshold": 150, "memory.min_summarize_threshold": 100,
                "memory.user_id_roles": "app", "memory.llm_api_key": API_KEY,
                "max_prepared_transactions": 4}
    with llm_cluster("worker", cluster + 2, settings) as port:
        yield port


def admin(port):
    return psycopg.connect(dsn(port=port), autocommit=True)


def conversation(port, n_messages=8, words=30, user=None):
    """A conversation (of its own user unless one is given), long enough to cross
    memory.summarize_threshold, written in one transaction: the job it enqueues sees all of its
    messages."""
    user = user or str(uuid.uuid4())
    with psycopg.connect(dsn(user="app", port=port), autocommit=True) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
        with c.transaction():
            cid = c.execute("SELECT (memory.create_conversation(%s)).id", (str(uuid.uuid4()),)).fetchone()[0]
            for i in range(n_messages):
                role = "user" if i % 2 == 0 else "assistant"
                c.execute("SELECT memory.add_message(%s, %s, %s)", (cid, role, f"message {i}: " + "lorem ipsum " * words))
    return cid


def job(port, cid):
    with admin(port) as c:
        row = c.execute("SELECT id, status, attempts, last_error, extract(epoch FROM run_after - updated_at)::float8 FROM memory.jobs WHERE kind = 'summary' AND conversation_id = %s ORDER BY id DESC LIMIT 1", (cid,)).fetchone()
    return dict(zip(["id", "status", "attempts", "last_error", "wait"], row)) if row else None


def summaries(port, cid):
    with admin(port) as c:
        return c.execute("SELECT covers_through_seq, content, model FROM memory.conversation_summaries WHERE conversation_id = %s ORDER BY id", (cid,
                                                                                                                                                 )).fetchall()


def test_summary_written_from_llm_answer(wk, llm):
    llm.mode = "ok"
    start = len(llm.requests)
    t0 = time.monotonic()
    cid = conversation(wk)
    assert job(wk, cid)["status"] in ("queued", "running", "done")
    wait_for(lambda: summaries(wk, cid))
    latency = time.monotonic() - t0
    (covers, content, model), = summaries(wk, cid)
    assert model == "fake-model" and content.startswith("SUMMARY #")
    assert job(wk, cid)["status"] == "done"
    req = llm.requests[start]
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == f"Bearer {API_KEY}"
    body = req["json"]
    assert body["model"] == "fake-model" and body["max_tokens"] == 77
    prompt = body["messages"][1]["content"]
    assert "Previous summary" not in prompt
    assert "message 0:" in prompt and f"message {covers - 1}:" in prompt and f"message {covers}:" not in prompt
    # the newest turns stay verbatim
    assert covers < 8
    # every LLM call is a usage row, charged to the conversation's owner
    with admin(wk) as c:
        calls = c.execute("SELECT l.kind, l.status, l.model, l.total_tokens > 0, l.user_id = v.user_id FROM memory.llm_calls l "
                          "JOIN memory.conversations v ON v.id = l.conversation_id WHERE l.conversation_id = %s", (cid,)).fetchall()
    assert calls == [("summary", "ok", "fake-model", True, True)]
    print(f"threshold crossed -> summary stored: {latency * 1000:.0f} ms (including the inserts)")

    # more messages: a progressive summary from the previous one plus only the new messages
    user = None
    with admin(wk) as c:
        user = c.execute("SELECT user_id FROM memory.conversations WHERE id = %s", (cid,)).fetchone()[0]
    with psycopg.connect(dsn(user="app", port=wk), autocommit=True) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (str(user),))
        with c.transaction():
            for i in range(8, 14):
                c.execute("SELECT memory.add_message(%s, 'user', %s)", (cid, f"message {i}: " + "dolor sit " * 30))
    wait_for(lambda: len(summaries(wk, cid)) == 2)
    second = llm.requests[-1]["json"]["messages"][1]["content"]
    assert second.startswith("Previous summary:\n" + content)
    assert "message 0:" not in second and f"message {covers + 1}:" in second
    # build_context uses the newest summary when not everything fits
    with psycopg.connect(dsn(user="app", port=wk), autocommit=True) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (str(user),))
        ctx = c.execute("SELECT memory.build_context(%s, 300)", (cid,)).fetchone()[0]
    assert ctx["summary_included"] and ctx["messages"][0]["content"].startswith("Summary of the earlier conversation: SUMMARY #")


@pytest.mark.parametrize("mode,text", [("500", "HTTP 500"), ("badjson", "invalid JSON"), ("empty", "no choices[0].message.content"),
                                       ("hang", "timeout")])
def test_failures_are_recorded_retried_and_never_stored(wk, llm, mode, text):
    llm.mode = mode
    llm.hang_seconds = 10
    cid = conversation(wk)
    first = wait_for(lambda: (j := job(wk, cid)) and j["attempts"] >= 1 and j["status"] == "queued" and j)
    assert text in first["last_error"].lower() if mode == "hang" else text in first["last_error"]
    assert first["wait"] == pytest.approx(BACKOFF_MS / 1000, abs=0.15)
    second = wait_for(lambda: (j := job(wk, cid)) and j["attempts"] >= 2 and j["status"] == "queued" and j, timeout=30)
    assert second["wait"] == pytest.approx(2 * BACKOFF_MS / 1000, abs=0.15)  # doubled
    final = wait_for(lambda: (j := job(wk, cid)) and j["status"] == "failed" and j, timeout=30)
    assert final["attempts"] == MAX_ATTEMPTS
    assert summaries(wk, cid) == []
    with admin(wk) as c:
        assert c.execute("SELECT kind, status, count(*) FROM memory.llm_calls WHERE conversation_id = %s GROUP BY 1, 2",
                         (cid,)).fetchall() == [("summary", "error", MAX_ATTEMPTS)]
    with admin(wk) as c:
        assert c.execute("SELECT count(*) FROM memory.conversation_summaries WHERE content ILIKE '%%error%%' OR content ILIKE '%%http%%'").fetchone()[0] == 0
    llm.mode = "ok"
    # a new request after failure starts a fresh job that succeeds
    with admin(wk) as c:
        c.execute("SELECT memory.request_summary(%s)", (cid,))
    wait_for(lambda: summaries(wk, cid))


def test_429_honours_retry_after(wk, llm):
    llm.mode, llm.retry_after = "429", 3
    cid = conversation(wk)
    first = wait_for(lambda: (j := job(wk, cid)) and j["attempts"] >= 1 and j["status"] == "queued" and j)
    assert "HTTP 429" in first["last_error"]
    assert first["wait"] == pytest.approx(3, abs=0.15)
    llm.mode = "ok"
    wait_for(lambda: summaries(wk, cid), timeout=15)


def test_deleted_conversation_ends_cleanly(wk, llm):
    llm.mode, llm.hang_seconds = "hang", 1
    cid = conversation(wk)
    wait_for(lambda: (j := job(wk, cid)) and j["status"] == "running")
    with admin(wk) as c:
        c.execute("DELETE FROM memory.conversations WHERE id = %s", (cid,))
    llm.mode = "ok"
    time.sleep(2.5)
    assert job(wk, cid) is None and summaries(wk, cid) == []
    # the worker is still alive and working
    other = conversation(wk)
    wait_for(lambda: summaries(wk, other))


def worker_pid(port):
    with admin(port) as c:
        row = c.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'memory_ext worker'").fetchone()
    return row[0] if row else None


def test_terminated_worker_is_restarted(wk, llm):
    llm.mode = "ok"
    pid = wait_for(lambda: worker_pid(wk))
    with admin(wk) as c:
        # ::integer: Citus adds pg_terminate_backend(bigint), which makes a smallint parameter ambiguous
        c.execute("SELECT pg_terminate_backend(%s::integer)", (pid,))
    new = wait_for(lambda: (p := worker_pid(wk)) and p != pid and p, timeout=20)
    assert new != pid
    cid = conversation(wk)
    wait_for(lambda: summaries(wk, cid), timeout=20)


def test_shutdown_during_hanging_call_and_recovery(wk, llm):
    llm.mode, llm.hang_seconds = "hang", 30
    cid = conversation(wk)
    wait_for(lambda: (j := job(wk, cid)) and j["status"] == "running")
    root = f"{TEST_ROOT}/worker"
    t = time.monotonic()
    subprocess.run([f"{ROOT}/scripts/cluster.sh", "stop", root], check=True)
    took = time.monotonic() - t
    assert took < TIMEOUT_MS / 1000 + 3, took
    llm.mode = "ok"
    subprocess.run([f"{ROOT}/scripts/cluster.sh", "start", root, str(wk)], check=True)
    wait_for(lambda: summaries(wk, cid), timeout=30)
    assert job(wk, cid)["status"] == "done"
    print(f"fast shutdown with the worker inside a hanging LLM call took {took:.2f} s")


def test_many_conversations_at_once(wk, llm):
    llm.mode = "ok"
    before = len(llm.requests)
    cids = [conversation(wk, n_messages=6) for _ in range(15)]
    wait_for(lambda: all(summaries(wk, c) for c in cids), timeout=60)
    with admin(wk) as c:
        rows = c.execute("SELECT conversation_id, count(*) FROM memory.conversation_summaries WHERE conversation_id = ANY(%s) GROUP BY 1", (cids,)).fetchall()
        jobs = c.execute("SELECT conversation_id, count(*), bool_and(status = 'done') FROM memory.jobs WHERE kind = 'summary' AND conversation_id = ANY(%s) GROUP BY 1", (cids,)).fetchall()
    assert sorted(n for _, n in rows) == [1] * 15
    assert all(n == 1 and done for _, n, done in jobs) and len(jobs) == 15
    assert len(llm.requests) - before == 15


def test_api_key_is_hidden_from_non_superusers(wk):
    with psycopg.connect(dsn(user="enduser", port=wk), autocommit=True) as c:
        for sql in ("SHOW memory.llm_api_key", "SELECT current_setting('memory.llm_api_key')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
                c.execute(sql)
            assert API_KEY not in str(e.value)
        rows = c.execute("SELECT name, setting FROM pg_settings WHERE name LIKE 'memory.%%'").fetchall()
        assert all(API_KEY not in (s or "") for _, s in rows) and "memory.llm_api_key" not in [n for n, _ in rows]
        shown = c.execute("SHOW ALL").fetchall()
        assert all(API_KEY not in str(r) for r in shown)
        for sql in ("SET memory.llm_api_key = 'x'", "ALTER SYSTEM SET memory.llm_api_key = 'x'"):
            with pytest.raises(psycopg.Error):
                c.execute(sql)
    with open(f"{TEST_ROOT}/worker/server.log", errors="replace") as f:
        assert API_KEY not in f.read()
    # the superuser can read it
    with admin(wk) as c:
        assert c.execute("SHOW memory.llm_api_key").fetchone()[0] == API_KEY


def test_sighup_reloads_settings(wk, llm):
    llm.mode = "ok"
    with admin(wk) as c:
        c.execute("ALTER SYSTEM SET memory.llm_model = 'fake-model-reloaded'")
        c.execute("SELECT pg_reload_conf()")
    try:
        time.sleep(0.5)
        cid = conversation(wk)
        wait_for(lambda: summaries(wk, cid))
        assert summaries(wk, cid)[0][2] == "fake-model-reloaded"
        assert llm.requests[-1]["json"]["model"] == "fake-model-reloaded"
    finally:
        with admin(wk) as c:
            c.execute("ALTER SYSTEM SET memory.llm_model = 'fake-model'")
            c.execute("SELECT pg_reload_conf()")


# Attacks that concern the worker ---------------------------------------------------------------

def test_a_failing_job_is_recorded_and_the_worker_goes_on(wk, llm):
    """Whatever makes storing one job's result fail (0.1.0: summary ids squatted by another user)
    is recorded in that job; the worker keeps its process and serves everyone else."""
    llm.mode = "ok"
    pid = wait_for(lambda: worker_pid(wk))
    victim = conversation(wk, n_messages=3, words=20)  # below the threshold: no job yet
    assert job(wk, victim) is None
    with admin(wk) as c:
        c.execute(f"""CREATE FUNCTION public.fail_store() RETURNS trigger LANGUAGE plpgsql AS $$
                      BEGIN IF NEW.conversation_id = '{victim}' THEN RAISE EXCEPTION 'simulated storage failure'; END IF;
                      RETURN NEW; END $$""")
        c.execute("CREATE TRIGGER zz_fail_store BEFORE INSERT ON memory.conversation_summaries FOR EACH ROW EXECUTE FUNCTION public.fail_store()")
    try:
        cid = conversation(wk)
        c2 = conversation(wk)
        with admin(wk) as c:
            c.execute("SELECT memory.request_summary(%s)", (victim,))
        wait_for(lambda: summaries(wk, cid) and summaries(wk, c2), timeout=30)
        j = wait_for(lambda: (j := job(wk, victim)) and j["attempts"] >= 1 and j["status"] in ("queued", "failed") and j, timeout=30)
        assert "simulated storage failure" in j["last_error"]
        assert worker_pid(wk) == pid
    finally:
        with admin(wk) as c:
            c.execute("DROP TRIGGER zz_fail_store ON memory.conversation_summaries")
            c.execute("DROP FUNCTION public.fail_store()")


def test_offline_summarizer_takes_a_long_backlog_in_bounded_steps(wk, llm):
    """12,000 short messages (0.1.0 needed 266 s and ignored termination meanwhile): the
    extractive summarizer reads one bounded batch per job and answers at once."""
    with admin(wk) as c:
        c.execute("ALTER SYSTEM RESET memory.llm_api_key")
        c.execute("SELECT pg_reload_conf()")
    try:
        time.sleep(0.5)
        user = str(uuid.uuid4())
        with psycopg.connect(dsn(user="app", port=wk), autocommit=True) as c:
            c.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
            cid = c.execute("SELECT (memory.create_conversation(%s)).id", (str(uuid.uuid4()),)).fetchone()[0]
            c.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content)
                         SELECT %s, CASE WHEN g %% 2 = 0 THEN 'user' ELSE 'assistant' END, 'Fact ' || g || '. Detail.'
                           FROM generate_series(0, 11999) g""", (cid,))
        t = time.monotonic()
        (covers, content, model), = wait_for(lambda: summaries(wk, cid), timeout=30)
        took = time.monotonic() - t
        assert model == "memory_ext/extractive"
        assert "Fact 0." in content and 0 < covers < 12000
        # one batch of at most memory.summary_batch_tokens stored tokens
        with admin(wk) as c:
            covered = c.execute("SELECT covered_tokens FROM memory.conversation_summaries WHERE conversation_id = %s", (cid,)).fetchone()[0]
        assert covered <= 16000 + 100
        # the next job continues from there
        with admin(wk) as c:
            c.execute("SELECT memory.request_summary(%s)", (cid,))
        wait_for(lambda: len(summaries(wk, cid)) == 2, timeout=30)
        assert summaries(wk, cid)[1][0] > covers
        print(f"extractive summary of a 12,000-message backlog: {took:.2f} s")
    finally:
        with admin(wk) as c:
            c.execute(f"ALTER SYSTEM SET memory.llm_api_key = '{API_KEY}'")
            c.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)


def test_prompts_are_bounded_whatever_a_message_holds(wk, llm):
    llm.mode = "ok"
    start = len(llm.requests)
    user = str(uuid.uuid4())
    with psycopg.connect(dsn(user="app", port=wk), autocommit=True) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
        with c.transaction():
            cid = c.execute("SELECT (memory.create_conversation(%s, encoding => 'chars4')).id", (str(uuid.uuid4()),)).fetchone()[0]
            c.execute("SELECT memory.add_message(%s, 'user', repeat('huge tool output ', 200000))", (cid,))
            for i in range(6):
                c.execute("SELECT memory.add_message(%s, 'assistant', %s)", (cid, f"reply {i} " + "word " * 20))
    wait_for(lambda: summaries(wk, cid), timeout=30)
    prompt = llm.requests[start]["json"]["messages"][1]["content"]
    assert len(prompt) < 20_000 and "more bytes cut" in prompt


def test_jobs_are_fair_between_users(wk, llm):
    """One user with many queued jobs does not make another user wait for all of them."""
    llm.mode, llm.delay = "ok", 0.3
    try:
        heavy = str(uuid.uuid4())
        many = [conversation(wk, n_messages=4, user=heavy) for _ in range(10)]
        light = conversation(wk, n_messages=4)
        wait_for(lambda: summaries(wk, light), timeout=30)
        with admin(wk) as c:
            done = c.execute("SELECT count(DISTINCT conversation_id) FROM memory.conversation_summaries WHERE conversation_id = ANY(%s)", (many,)).fetchone()[0]
        assert done <= 4, done
        wait_for(lambda: all(summaries(wk, m) for m in many), timeout=60)
        # the per-user count of queued jobs the claim relies on stays exact
        with admin(wk) as c:
            assert c.execute("""SELECT count(*) FROM memory.queue_turns t WHERE t.queued <>
                                (SELECT count(*) FROM memory.jobs j WHERE j.user_id = t.user_id AND j.status = 'queued')""").fetchone()[0] == 0
    finally:
        llm.delay = 0.0


def test_postmaster_crash_during_a_hanging_llm_call_does_not_block_restart(wk, llm):
    """kill -9 of the postmaster while the worker waits on a hanging LLM (20 s timeout) with more
    jobs queued: the worker notices at once and exits, so the cluster accepts connections again
    within 5 s, and the interrupted job is redone."""
    root = f"{TEST_ROOT}/worker"
    with admin(wk) as c:
        c.execute("ALTER SYSTEM SET memory.llm_timeout = 20000")
        c.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)
    llm.mode, llm.hang_seconds = "hang", 60
    try:
        cids = [conversation(wk) for _ in range(3)]
        wait_for(lambda: any((j := job(wk, c)) and j["status"] == "running" for c in cids))
        with admin(wk) as c:  # the test clusters commit asynchronously: make the writes durable first
            c.execute("CHECKPOINT")
        with open(f"{root}/data/postmaster.pid") as f:
            postmaster = int(f.readline())
        os.kill(postmaster, 9)
        t = time.monotonic()
        started = False
        while not started and time.monotonic() - t < 15:
            started = subprocess.run([f"{ROOT}/scripts/cluster.sh", "start", root, str(wk)], capture_output=True).returncode == 0
            if not started:
                time.sleep(0.2)
        took = time.monotonic() - t
        assert started and took < 5, f"restart took {took:.1f} s"
        print(f"kill -9 of the postmaster during a hanging LLM call: accepting connections again after {took:.2f} s")
    finally:
        llm.mode = "ok"
        with admin(wk) as c:
            c.execute(f"ALTER SYSTEM SET memory.llm_timeout = {TIMEOUT_MS}")
            c.execute("SELECT pg_reload_conf()")
    wait_for(lambda: all(summaries(wk, c) for c in cids), timeout=60)


def test_worker_killed_mid_call_redoes_the_job_exactly_once(wk, llm):
    """kill -9 of the worker while it waits on the LLM: the postmaster restarts the cluster, the
    job left `running` is queued again and redone, and exactly one summary is written."""
    llm.mode, llm.hang_seconds = "hang", 5
    cid = conversation(wk)
    wait_for(lambda: (j := job(wk, cid)) and j["status"] == "running")
    with admin(wk) as c:  # the test clusters commit asynchronously: make the writes durable first
        c.execute("CHECKPOINT")
    os.kill(worker_pid(wk), 9)
    llm.mode = "ok"

    def settled():
        try:
            return summaries(wk, cid) and job(wk, cid)["status"] == "done"
        except psycopg.OperationalError:  # the cluster is restarting after the crash
            return False

    wait_for(settled, timeout=60, step=0.3)
    time.sleep(1)
    assert len(summaries(wk, cid)) == 1
    assert job(wk, cid)["attempts"] == 0  # the crash spent no attempt: only the call's own failures do


def test_retention_deletes_only_what_is_due_in_batches_and_survives_a_restart(wk, llm):
    """memory.retention_days: the worker deletes conversations not updated for that long, in
    batches of memory.retention_batch, logging counts; nothing younger is touched; a worker
    stopped in the middle of a batch deletes nothing of it, and the batch is done again after
    the restart."""
    owner = str(uuid.uuid4())
    ages = [40] * 25 + [29, 0, 0, 0]            # days since the last update
    with admin(wk) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (owner,))
        ids = []
        for _age in ages:
            cid = c.execute("SELECT (memory.create_conversation(gen_random_uuid())).id").fetchone()[0]
            c.execute("SELECT memory.add_message(%s, 'user', 'hello'), memory.add_message(%s, 'assistant', 'hi')", (cid, cid))
            ids.append(cid)
        # back-date (the update trigger would stamp now())
        c.execute("SET session_replication_role = replica")
        for cid, age in zip(ids, ages):
            c.execute("UPDATE memory.conversations SET updated_at = now() - make_interval(days => %s) - interval '1 hour' + "
                      "make_interval(secs => %s) WHERE id = %s", (age, ids.index(cid), cid))
        c.execute("RESET session_replication_role")
        due = [r[0] for r in c.execute("SELECT conversation_id FROM memory.retention_preview(30) WHERE user_id = %s", (owner,))]
        assert due == ids[:25]                      # oldest first, the 29-day one not among them
        # off by default: nothing is due; a period must be a day or more
        assert c.execute("SELECT count(*) FROM memory.retention_preview() WHERE user_id = %s", (owner,)).fetchone() == (0,)
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            c.execute("SELECT * FROM memory.retention_preview(0)")
    assert not any(j for j in jobs_of_kind(wk, "retention"))

    def alive():
        with admin(wk) as c:
            return {r[0] for r in c.execute("SELECT id FROM memory.conversations WHERE id = ANY(%s)", (ids,))}

    def settled(pred):
        def check():
            try:
                return pred()
            except psycopg.OperationalError:  # the cluster is restarting after the crash
                return False
        return check

    # The oldest conversation's messages are locked by a prepared transaction (which outlives a
    # crash): the first batch waits in its DELETE (up to the worker's lock_timeout), the worker is
    # killed there (kill -9: the postmaster restarts the cluster), and the restarted worker takes
    # the job up again.
    with admin(wk) as locker:
        locker.execute("BEGIN")
        locker.execute("SELECT 1 FROM memory.conversation_messages WHERE conversation_id = %s FOR UPDATE", (ids[0],))
        locker.execute("PREPARE TRANSACTION 'retention_lock'")
    try:
        with admin(wk) as c:
            for k, v in (("memory.retention_days", 30), ("memory.retention_batch", 10), ("memory.retention_interval", 1)):
                c.execute(f"ALTER SYSTEM SET {k} = {v}")
            c.execute("SELECT pg_reload_conf()")
        wait_for(lambda: any(j["status"] == "running" for j in jobs_of_kind(wk, "retention")), timeout=20)
        time.sleep(0.3)
        assert alive() == set(ids)
        with admin(wk) as c:  # the test clusters commit asynchronously: make the writes durable first
            c.execute("CHECKPOINT")
        os.kill(worker_pid(wk), 9)
        # the restarted worker has queued the interrupted job again (the interruption is counted in
        # its payload, not as an attempt) and tries the same batch, which waits for the lock at most
        # the worker's lock_timeout each time
        def interrupted():
            with admin(wk) as c:
                return c.execute("SELECT 1 FROM memory.jobs WHERE kind = 'retention' "
                                 "AND (payload->>'interruptions')::int >= 1").fetchone()
        wait_for(settled(interrupted),
                 timeout=60, step=0.3)
        assert alive() == set(ids)                  # the interrupted batch deleted nothing
    finally:
        wait_for(settled(lambda: admin(wk).close() or True), timeout=60, step=0.3)
        with admin(wk) as c:
            c.execute("ROLLBACK PREPARED 'retention_lock'")
    try:
        wait_for(lambda: alive() == set(ids[25:]), timeout=60)
        time.sleep(1.5)                              # a later check finds nothing more to do
        assert alive() == set(ids[25:])
        with open(f"{TEST_ROOT}/worker/server.log", errors="replace") as f:
            counts = [int(m) for m in re.findall(r"retention: deleted (\d+) conversations", f.read())]
        assert sum(counts) >= 25 and max(counts) <= 10
    finally:
        with admin(wk) as c:
            for k in ("memory.retention_days", "memory.retention_batch", "memory.retention_interval"):
                c.execute(f"ALTER SYSTEM RESET {k}")
            c.execute("SELECT pg_reload_conf()")


def test_an_agents_retention_days_overrides_the_setting(wk, llm):
    """agents.retention_days: n deletes the agent's conversations n days after their last update
    even with memory.retention_days off, and shortens the operator's period; the operator's
    memory.retention_days is a ceiling that no agent lifts (0 or NULL follow it: in 0.2.0 an
    agent's 0 kept its conversations forever whatever the operator set)."""
    owner = str(uuid.uuid4())
    with admin(wk) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (owner,))
        short = c.execute("SELECT (memory.create_agent('short', retention_days => 2)).id").fetchone()[0]
        forever = c.execute("SELECT (memory.create_agent('forever', retention_days => 0)).id").fetchone()[0]
        default = c.execute("SELECT (memory.create_agent('default')).id").fetchone()[0]
        plan = {"short_old": (short, 3), "short_young": (short, 1), "forever_old": (forever, 400),
                "default_old": (default, 400), "no_agent_old": (None, 400)}
        ids = {}
        for name, (agent, _) in plan.items():
            ids[name] = c.execute("SELECT (memory.create_conversation(coalesce(%s, gen_random_uuid()))).id", (agent,)).fetchone()[0]
        c.execute("SET session_replication_role = replica")  # back-date past the update trigger
        for name, (_, age) in plan.items():
            c.execute("UPDATE memory.conversations SET updated_at = now() - make_interval(days => %s) - interval '1 hour' "
                      "WHERE id = %s", (age, ids[name]))
        c.execute("RESET session_replication_role")
        preview = c.execute("SELECT conversation_id, retention_days FROM memory.retention_preview() WHERE user_id = %s",
                            (owner,)).fetchall()
        assert preview == [(ids["short_old"], 2)]
        preview = c.execute("SELECT conversation_id FROM memory.retention_preview(30) WHERE user_id = %s", (owner,)).fetchall()
        assert {r[0] for r in preview} == {ids["short_old"], ids["default_old"], ids["no_agent_old"], ids["forever_old"]}
        with pytest.raises(psycopg.errors.CheckViolation):
            c.execute("SELECT memory.update_agent(%s, retention_days => -1)", (short,))

    def alive():
        with admin(wk) as c:
            found = {r[0] for r in c.execute("SELECT id FROM memory.conversations WHERE id = ANY(%s)", (list(ids.values()),))}
            return {name for name, cid in ids.items() if cid in found}

    try:
        with admin(wk) as c:
            c.execute("ALTER SYSTEM SET memory.retention_interval = 1")
            c.execute("SELECT pg_reload_conf()")
        # memory.retention_days is 0: only the agent's own period applies
        wait_for(lambda: "short_old" not in alive(), timeout=30)
        assert alive() == set(plan) - {"short_old"}
        with admin(wk) as c:
            c.execute("ALTER SYSTEM SET memory.retention_days = 30")
            c.execute("SELECT pg_reload_conf()")
        wait_for(lambda: alive() == {"short_young"}, timeout=30)
        time.sleep(1.5)
        assert alive() == {"short_young"}
    finally:
        with admin(wk) as c:
            c.execute("ALTER SYSTEM RESET memory.retention_days")
            c.execute("ALTER SYSTEM RESET memory.retention_interval")
            c.execute("SELECT pg_reload_conf()")


def jobs_of_kind(port, kind):
    with admin(port) as c:
        cur = c.execute("SELECT id, status, attempts, last_error FROM memory.jobs WHERE kind = %s ORDER BY id", (kind,))
        return [dict(zip(("id", "status", "attempts", "last_error"), r)) for r in cur]


def test_the_worker_rolls_up_the_daily_figures(wk, llm):
    """The worker adds the newest messages to memory.message_days_rollup and moves each
    conversation's mark, skipping a conversation while a transaction writes to it; the view's
    figures are the same before and after."""
    truth = """SELECT (created_at AT TIME ZONE 'UTC')::date, count(*), sum(token_count)::bigint
                 FROM memory.conversation_messages WHERE conversation_id = %s GROUP BY 1"""
    view = "SELECT day, messages, tokens FROM memory.message_days WHERE conversation_id = %s"
    rolled = "SELECT day, messages, tokens FROM memory.message_days_rollup WHERE conversation_id = %s"
    mark = "SELECT through_seq FROM memory.message_days_marks WHERE conversation_id = %s"
    user = str(uuid.uuid4())
    cid = conversation(wk, n_messages=4, words=2, user=user)
    with admin(wk) as c:
        assert c.execute(view, (cid,)).fetchall() == c.execute(truth, (cid,)).fetchall()
        wait_for(lambda: c.execute(mark, (cid,)).fetchone() == (4,), timeout=20)
        assert c.execute(rolled, (cid,)).fetchall() == c.execute(truth, (cid,)).fetchall()
    # an open transaction appending to it: the worker passes it by, the view counts the new row
    with psycopg.connect(dsn(user="app", port=wk)) as writer:
        writer.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
        writer.execute("SELECT memory.add_message(%s, 'user', 'one more')", (cid,))
        time.sleep(1.5)   # at least one rollup pass while the row is locked
        with admin(wk) as c:
            assert c.execute(mark, (cid,)).fetchone() == (4,)
        writer.commit()
    with admin(wk) as c:
        assert c.execute(view, (cid,)).fetchall() == c.execute(truth, (cid,)).fetchall()
        wait_for(lambda: c.execute(mark, (cid,)).fetchone() == (5,), timeout=20)
        assert c.execute(rolled, (cid,)).fetchall() == c.execute(truth, (cid,)).fetchall()
