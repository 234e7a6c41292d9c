"""Signals during LLM calls: chat turns (memory.chat, in user backends) and reply and summary
jobs (the background worker) run while other sessions send configuration reloads (SIGHUP to every
process), NOTIFY traffic (SIGUSR1 to every listener) and cancel requests (SIGINT) to idle sessions
as fast as they can. No PostgreSQL signal handler may ever run on a thread memory_ext started: if
one did, pgrx aborts the process and the postmaster restarts the whole cluster. Pass means no
abort and no crash restart in the server log, and every turn either answered (its two messages
stored, once) or failed with a SQLSTATE and wrote nothing."""
import os
import re
import threading
import time
import uuid

import psycopg
import pytest

from support.pg import TEST_ROOT, admin_on, app_on, llm_cluster, wait_for

SECONDS = float(os.environ.get("MEMORY_EXT_STRESS_SECONDS", "30"))
CHATTERS = 3
REPLIERS = 2
API_KEY = "sk-signals-test-0c1d"
CRASH = re.compile(r"terminated by signal|terminating any other active server processes|"
                   r"all server processes terminated|may not be called from multiple threads|PANIC")


@pytest.fixture(scope="module")
def pg(cluster, llm):
    settings = {"memory.llm_base_url": f"http://127.0.0.1:{llm.port}/v1", "memory.llm_model": "fake-model",
                "memory.llm_api_key": API_KEY, "memory.llm_timeout": 5000, "memory.retry_backoff": 100,
                "memory.max_attempts": 10, "memory.worker_naptime": 20, "memory.user_id_roles": "app"}
    with llm_cluster("signals", cluster + 10, settings) as port:
        yield port


def new_conversation(c):
    agent = c.execute("SELECT (memory.create_agent('stress', 'You are terse.')).id").fetchone()[0]
    return c.execute("SELECT (memory.create_conversation(%s)).id", (agent,)).fetchone()[0]


def test_signals_during_llm_calls_never_reach_memory_ext_threads(pg, llm):
    llm.mode, llm.delay = "ok", 0.002
    log_path = f"{TEST_ROOT}/signals/server.log"
    log_start = os.path.getsize(log_path)
    # every session connects and makes its conversation before the signals start: a cancel may
    # otherwise meet the set-up rather than a turn
    ready = threading.Barrier(CHATTERS + REPLIERS + 1)
    stop = float("inf")
    results = {"answered": 0, "failed": {}, "lost": [], "replies": 0}
    lock = threading.Lock()
    chat_conversations = {}

    def chatter(k):
        user = str(uuid.uuid4())
        with app_on(pg, user) as c:
            cid = new_conversation(c)
            # a listener on the channel every append notifies: each NOTIFY is a SIGUSR1 to this backend
            c.execute("LISTEN memory_messages")
            ready.wait()
            answered = 0
            while time.monotonic() < stop:
                try:
                    c.execute("SELECT memory.chat(%s, %s)", (cid, f"turn {answered} of chatter {k}")).fetchone()
                    answered += 1
                except psycopg.Error as e:
                    if e.sqlstate is None:  # the connection itself broke: a crash
                        with lock:
                            results["lost"].append(str(e))
                        return
                    assert e.sqlstate, f"a failed turn without a SQLSTATE: {e}"
                    with lock:
                        results["failed"][e.sqlstate] = results["failed"].get(e.sqlstate, 0) + 1
            with lock:
                results["answered"] += answered
                chat_conversations[cid] = (user, answered)

    def cancelled(e):
        """A cancel that met a session just as it turned busy: counted, and the statement retried."""
        if e.sqlstate != "57014":
            return False
        with lock:
            results["failed"]["57014"] = results["failed"].get("57014", 0) + 1
        return True

    def retried(c, sql, *args):
        while True:
            try:
                return c.execute(sql, args).fetchone()
            except psycopg.Error as e:
                if not cancelled(e):
                    raise

    def replier(k):
        user = str(uuid.uuid4())
        try:
            with app_on(pg, user) as c:
                cid = new_conversation(c)
                ready.wait()
                n = 0
                while time.monotonic() < stop:
                    retried(c, "SELECT memory.add_message(%s, 'user', %s)", cid, f"question {n} " + "word " * 40)
                    job = retried(c, "SELECT memory.request_reply(%s)", cid)[0]
                    if n % 5 == 4:
                        retried(c, "SELECT memory.request_summary(%s)", cid)
                    deadline = time.monotonic() + 15
                    while time.monotonic() < deadline:
                        s = retried(c, "SELECT memory.reply_status(%s)", job)[0]
                        if s["status"] in ("done", "failed"):
                            break
                        time.sleep(0.01)
                    assert s["status"] == "done", f"reply job {job} ended {s}"
                    n += 1
                with lock:
                    results["replies"] += n
        except psycopg.Error as e:
            with lock:
                results["lost"].append(f"{e.sqlstate}: {e}")

    def hammer(sql_of):
        # reconnects on its own errors: a cancel may hit it too
        while time.monotonic() < stop:
            try:
                with admin_on(pg) as c:
                    while time.monotonic() < stop:
                        c.execute(sql_of())
            except psycopg.Error:
                time.sleep(0.01)

    idle = [admin_on(pg) for _ in range(4)]  # sessions that just sit there and take the cancels
    sessions = [threading.Thread(target=chatter, args=(k,)) for k in range(CHATTERS)]
    sessions += [threading.Thread(target=replier, args=(k,)) for k in range(REPLIERS)]
    for t in sessions:
        t.start()
    stop = time.monotonic() + SECONDS  # read by the threads once the barrier opens
    ready.wait(timeout=60)
    threads = [threading.Thread(target=hammer, args=(lambda: "SELECT pg_reload_conf()",)),
                threading.Thread(target=hammer, args=(lambda: "NOTIFY memory_messages, 'noise'",)),
                threading.Thread(target=hammer, args=(lambda: """
                    SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
                     WHERE state = 'idle' AND backend_type = 'client backend' AND pid <> pg_backend_pid()""",))]
    for t in threads:
        t.start()
    for t in sessions + threads:
        t.join(SECONDS + 60)
    for c in idle:
        c.close()

    with open(log_path, errors="replace") as f:
        f.seek(log_start)
        crashes = [line for line in f if CRASH.search(line)]
    assert not crashes, "the server crashed:\n" + "".join(crashes[:10])
    assert not results["lost"], f"connections broke: {results['lost'][:3]}"
    # enough turns to have met the signals many times (each turn starts one thread)
    assert results["answered"] >= 200, results
    assert results["replies"] >= 20, results
    # only cancels (a cancel that meets a session just as it turns busy) may fail a turn
    assert set(results["failed"]) <= {"57014"}, results
    with admin_on(pg) as c:
        # the last summaries requested finish, then no call is left pending
        wait_for(lambda: c.execute("SELECT count(*) FROM memory.jobs WHERE status IN ('queued', 'running')").fetchone()[0] == 0,
                 timeout=30)
        for cid, (_user, answered) in chat_conversations.items():
            stored = c.execute("SELECT count(*) FILTER (WHERE role = 'user'), count(*) FILTER (WHERE role = 'assistant') "
                               "FROM memory.conversation_messages WHERE conversation_id = %s", (cid,)).fetchone()
            # an answered turn stored its two messages; a failed one wrote nothing
            assert stored == (answered, answered), (cid, stored, answered)
        assert c.execute("SELECT count(*) FROM memory.llm_calls WHERE status IN ('pending', 'unknown')").fetchone()[0] == 0
        results["summaries"] = c.execute("SELECT count(*) FROM memory.conversation_summaries").fetchone()[0]
    assert results["summaries"] >= 1, results  # the worker's summary calls were among the signals' targets
    print(f"signals stress: {SECONDS:.0f} s, {results}")
