"""The worker's calls in flight: replies of different conversations are answered concurrently, up
to memory.worker_concurrency, with at most memory.worker_user_concurrency calls for one user while
others wait; a kill -9 of the worker with several calls in flight leaves a usage row for every call
the provider received, redoes each job once without spending an attempt, and stores exactly one
reply per request."""
import os
import time
import uuid

import psycopg
import pytest

from support.pg import admin_on, app_on, llm_cluster, wait_for

API_KEY = "sk-concurrency-test-77aa"


@pytest.fixture(scope="module")
def pg(cluster, llm):
    settings = {"memory.llm_base_url": f"http://127.0.0.1:{llm.port}/v1", "memory.llm_model": "fake-model",
                "memory.llm_api_key": API_KEY, "memory.llm_timeout": 10000, "memory.retry_backoff": 100,
                "memory.max_attempts": 3, "memory.worker_naptime": 20, "memory.user_id_roles": "app",
                "memory.worker_concurrency": 8, "memory.worker_user_concurrency": 2}
    with llm_cluster("concurrency", cluster + 11, settings) as port:
        yield port


@pytest.fixture(autouse=True)
def fake(llm):
    llm.mode, llm.delay = "ok", 0.0
    yield llm
    llm.mode, llm.delay = "ok", 0.0


def ask(port, user, text, conversations=1):
    """Conversations of `user`, each with one user message `text #k`; returns their ids."""
    with app_on(port, user) as c:
        agent = c.execute("SELECT (memory.create_agent('a', 'You are terse.')).id").fetchone()[0]
        cids = []
        for k in range(conversations):
            cid = c.execute("SELECT (memory.create_conversation(%s)).id", (agent,)).fetchone()[0]
            c.execute("SELECT memory.add_message(%s, 'user', %s)", (cid, f"{text} #{k}"))
            cids.append(cid)
        return cids


def request_replies(port, user, cids):
    with app_on(port, user) as c:
        return [c.execute("SELECT memory.request_reply(%s)", (cid,)).fetchone()[0] for cid in cids]


def jobs_done(port, jobs):
    with admin_on(port) as c:
        return c.execute("SELECT count(*) FROM memory.jobs WHERE id = ANY (%s) AND status = 'done'", (jobs,)).fetchone()[0] == len(jobs)


def replies(port, cid):
    with admin_on(port) as c:
        return c.execute("SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s AND role = 'assistant'",
                         (cid,)).fetchone()[0]


def calls_of(llm, marker):
    """(arrived, answered) of each chat request whose last message contains `marker`."""
    return [(r["at"], r.get("done", float("inf"))) for r in llm.requests
            if marker in (r["json"]["messages"][-1].get("content") or "")]


def most_at_once(intervals):
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = now = 0
    for _, d in points:
        now += d
        best = max(best, now)
    return best


def test_replies_of_different_users_are_answered_concurrently(pg, fake):
    fake.delay = 1.0
    users = [str(uuid.uuid4()) for _ in range(8)]
    cids = {u: ask(pg, u, f"parallel question of {u}") for u in users}
    jobs = [j for u in users for j in request_replies(pg, u, cids[u])]
    wait_for(lambda: jobs_done(pg, jobs), timeout=30, step=0.05)
    # the provider saw the calls overlap (one call at a time: never more than 1)
    assert most_at_once(calls_of(fake, "parallel question of")) >= 6
    assert all(replies(pg, cid) == 1 for u in users for cid in cids[u])


def test_one_user_cannot_take_every_slot_and_the_user_served_longest_ago_goes_first(pg, fake):
    fake.delay = 1.0
    greedy, patient = str(uuid.uuid4()), str(uuid.uuid4())
    greedy_cids = ask(pg, greedy, "greedy question", conversations=6)
    patient_cids = ask(pg, patient, "patient question")
    jobs = request_replies(pg, greedy, greedy_cids)
    time.sleep(0.3)  # the greedy user's calls are in flight before the patient user asks
    jobs += request_replies(pg, patient, patient_cids)
    wait_for(lambda: jobs_done(pg, jobs), timeout=30, step=0.05)
    greedy_calls = calls_of(fake, "greedy question")
    assert len(greedy_calls) == 6
    assert most_at_once(greedy_calls) <= 2, "more calls of one user in flight than memory.worker_user_concurrency"
    # the patient user's one job did not wait behind the greedy user's queue: it reached the
    # provider before the greedy user's third call (the greedy user holds its 2 slots meanwhile)
    [(patient_at, _)] = calls_of(fake, "patient question")
    assert patient_at < sorted(a for a, _ in greedy_calls)[2]
    assert all(replies(pg, cid) == 1 for cid in greedy_cids + patient_cids)


def worker_pid(port):
    with admin_on(port) as c:
        return c.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'memory_ext worker'").fetchone()[0]


def test_kill_9_with_calls_in_flight_records_every_call_and_answers_each_request_once(pg, fake):
    fake.delay = 3.0
    users = [str(uuid.uuid4()) for _ in range(4)]
    cids = {u: ask(pg, u, f"crash question of {u}")[0] for u in users}
    before = len(fake.requests)
    jobs = [request_replies(pg, u, [cids[u]])[0] for u in users]
    wait_for(lambda: len(fake.requests) - before >= 4, timeout=10, step=0.02)
    with admin_on(pg) as c:  # the test clusters commit asynchronously: make the writes durable first
        c.execute("CHECKPOINT")
        assert c.execute("SELECT count(*) FROM memory.llm_calls WHERE job_id = ANY (%s) AND status = 'pending'",
                         (jobs,)).fetchone()[0] == 4
    os.kill(worker_pid(pg), 9)  # the postmaster restarts the cluster; the worker comes back
    fake.delay = 0.2

    def settled():
        try:
            return jobs_done(pg, jobs)
        except psycopg.OperationalError:  # the cluster is restarting after the crash
            return False

    wait_for(settled, timeout=60, step=0.3)
    time.sleep(2 * 0.2 + 0.5)  # nothing more arrives
    for u in users:
        assert replies(pg, cids[u]) == 1, "exactly one reply per request"
    with admin_on(pg) as c:
        calls = c.execute("SELECT status, count(*) FROM memory.llm_calls WHERE job_id = ANY (%s) GROUP BY 1 ORDER BY 1",
                          (jobs,)).fetchall()
        # every call the provider received has its row: the interrupted ones as 'unknown'
        assert calls == [("ok", 4), ("unknown", 4)], calls
        assert len(fake.requests) - before == 8
        unknown_tokens = c.execute("SELECT min(local_prompt_tokens) FROM memory.llm_calls WHERE job_id = ANY (%s) AND status = 'unknown'",
                                   (jobs,)).fetchone()[0]
        assert unknown_tokens > 0  # charged to the user's day at the prompt's own count
        rows = c.execute("SELECT attempts, (payload->>'interruptions')::int FROM memory.jobs WHERE id = ANY (%s)", (jobs,)).fetchall()
        # the crash spent no attempt
        assert rows == [(0, 1)] * 4, rows


def test_a_users_row_lock_delays_only_their_own_reply(pg, fake):
    """An owner holding `SELECT … FOR UPDATE` on their own conversation (an open transaction, an
    idle-in-transaction session) while its reply comes in: the worker does not wait on it for more
    than its lock_timeout, serves another user's reply meanwhile, and stores the owner's answer
    once the lock is gone — exactly once."""
    fake.delay = 0.7
    owner, other = str(uuid.uuid4()), str(uuid.uuid4())
    [locked_cid] = ask(pg, owner, "locked question")
    [other_cid] = ask(pg, other, "other question")
    [locked_job] = request_replies(pg, owner, [locked_cid])
    wait_for(lambda: calls_of(fake, "locked question"), timeout=10, step=0.02)
    with app_on(pg, owner) as holder:
        holder.execute("BEGIN")
        assert holder.execute("SELECT 1 FROM memory.conversations WHERE id = %s FOR UPDATE", (locked_cid,)).fetchone()
        time.sleep(1.0)  # the answer arrived and met the lock
        [other_job] = request_replies(pg, other, [other_cid])
        # answered while the lock is still held (in 0.2.0 it waited for the ROLLBACK below)
        wait_for(lambda: jobs_done(pg, [other_job]), timeout=10, step=0.05)
        assert replies(pg, other_cid) == 1 and replies(pg, locked_cid) == 0
        holder.execute("ROLLBACK")
    wait_for(lambda: jobs_done(pg, [locked_job]), timeout=10, step=0.05)
    assert replies(pg, locked_cid) == 1
    assert len(calls_of(fake, "locked question")) == 1  # the answer was kept, not asked for again
