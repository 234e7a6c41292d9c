"""Chat turns against a stand-in LLM (the tests' fake OpenAI-compatible server on 127.0.0.1,
answering at once): what memory.chat adds over a direct HTTP call of the same request, the
application-side loop it replaces, the worker's reply throughput, and what the per-user limit
check costs an append. Run by bench/run.sh on a cluster of its own whose worker serves `bench`."""
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import time

import psycopg
from benchdb import setup_writes_db
from psycopg.types.json import Jsonb

from support.fake_llm import FakeLLM
from support.pg import BIN

HERE = os.path.dirname(os.path.abspath(__file__))

USER_ID = "b0000000-0000-0000-0000-0000000000be"


def connect(port, user="bench"):
    c = psycopg.connect(f"host=127.0.0.1 port={port} dbname=bench user={user}", autocommit=True)
    if user == "bench":
        c.execute("SELECT set_config('memory.user_id', %s, false)", (USER_ID,))
    return c


def setting(port, name, value):
    with connect(port, "postgres") as c:
        c.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        c.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)


def interleaved_medians_ms(fns, reps):
    """The median time of each function, run in turn round after round."""
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, t in zip(fns, times):
            start = time.perf_counter()
            fn()
            t.append((time.perf_counter() - start) * 1000)
    return [statistics.median(t) for t in times]


def post(port, body):
    """A direct call of the same request, a new connection each time (as memory.chat makes)."""
    h = http.client.HTTPConnection("127.0.0.1", port)
    h.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    out = json.loads(h.getresponse().read())
    h.close()
    return out


class StandInProcess:
    """The stand-in LLM in a process of its own, as a provider is: in the benchmark's process its
    HTTP server would share one interpreter lock with the client that times the calls."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "..", "tests", "support", "fake_llm.py"), "0"],
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().split("127.0.0.1:")[1].split("/")[0])

    def last_request(self):
        h = http.client.HTTPConnection("127.0.0.1", self.port)
        h.request("GET", "/_last_request")
        body = h.getresponse().read()
        h.close()
        return body

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def setup(port, llm_port):
    setup_writes_db(port)
    setting(port, "memory.llm_base_url", f"http://127.0.0.1:{llm_port}/v1")
    setting(port, "memory.llm_model", "fake-model")


def bench_chat(port, llm_port, n, reps):
    stand_in = StandInProcess()
    setting(port, "memory.llm_base_url", f"http://127.0.0.1:{stand_in.port}/v1")
    try:
        return measure_chat(port, stand_in, n, reps)
    finally:
        setting(port, "memory.llm_base_url", f"http://127.0.0.1:{llm_port}/v1")
        stand_in.stop()


def measure_chat(port, llm, n, reps):
    conn = connect(port)
    # no summaries while measuring: the worker would compete for the two cores
    agent = conn.execute("SELECT (memory.create_agent('bench', 'You are a helpful assistant.', summarize_threshold => 2000000000)).id").fetchone()[0]
    cid = conn.execute("SELECT (memory.create_conversation(%s)).id", (agent,)).fetchone()[0]
    rng = random.Random(7)
    words = "the of and to in is that for it as with memory context window token budget agent user tool paris".split()
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": " ".join(rng.choice(words) for _ in range(40))} for i in range(n)]
    for i in range(0, n, 2000):
        conn.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content, seq, token_count)
                        SELECT %s, r.role, r.content, 0, 0 FROM jsonb_to_recordset(%s) AS r(role text, content text)""",
                     (cid, Jsonb(msgs[i:i + 2000])))
    conn.execute("ANALYZE memory.conversation_messages")
    def chat():
        return conn.execute("SELECT memory.chat(%s, 'What should I see in Paris?')", (cid,), prepare=True).fetchone()
    budget = chat()[0]["context"]["max_tokens"]
    body = llm.last_request()

    def direct():
        post(llm.port, body)

    def app_loop():  # what an application does without memory.chat: four round trips plus the call
        conn.execute("SELECT memory.add_message(%s, 'user', 'What should I see in Paris?')", (cid,), prepare=True)
        ctx = conn.execute("SELECT memory.build_context(%s, 6000, 'You are a helpful assistant.')", (cid,), prepare=True).fetchone()[0]
        answer = post(llm.port, json.dumps({"model": "fake-model", "messages": ctx["messages"], "max_tokens": 2000}))
        conn.execute("SELECT memory.add_message(%s, 'assistant', %s)", (cid, answer["choices"][0]["message"]["content"]), prepare=True)

    # what the overhead is made of: the same window (the budget memory.chat reported: the agent's
    # context less the room kept for the answer), and one append
    def window():
        conn.execute("SELECT length(memory.build_context(%s, %s, 'You are a helpful assistant.')::text)",
                     (cid, budget), prepare=True).fetchone()
    same = conn.execute("SELECT jsonb_array_length(memory.build_context(%s, %s, 'You are a helpful assistant.')->'messages')",
                        (cid, budget)).fetchone()[0]

    def append():
        conn.execute("SELECT (memory.add_message(%s, 'user', 'And in Lyon?')).seq", (cid,), prepare=True).fetchone()
    # interleaved, so that a shared machine's slow moments weigh on every measure alike
    in_db, direct, loop, window_ms, append_ms = interleaved_medians_ms([chat, direct, app_loop, window, append], reps)
    window = json.loads(body)["messages"]
    conn.close()
    assert abs(same - len(window)) <= 2, f"build_context's window ({same}) is not memory.chat's ({len(window)})"
    print(f"  memory.chat at {n} messages ({len(window)} in the window): {in_db:.2f} ms; direct HTTP call of the same request: "
          f"{direct:.2f} ms; overhead {in_db - direct:.2f} ms = {(in_db - direct) / window_ms:.2f}× its build_context alone "
          f"({window_ms:.2f} ms; one add_message {append_ms:.2f} ms); the application loop it replaces: {loop:.2f} ms", flush=True)
    return {"messages": n, "window_messages": len(window), "chat_ms": in_db, "direct_http_ms": direct,
            "overhead_ms": in_db - direct, "app_loop_ms": loop, "build_context_ms": window_ms, "add_message_ms": append_ms}


def wait_for_worker(admin):
    # the worker restarts after its database was re-created: measure once it serves bench
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline and not admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'memory_ext worker' AND datname = 'bench'").fetchone():
        time.sleep(0.1)


def answer_replies(port, n):
    """n conversations each get a user message through a plain INSERT (auto_reply); returns how
    many were answered and the seconds until every job ended."""
    admin = connect(port, "postgres")  # the queue is not the users'
    conn = connect(port)
    agent = conn.execute("SELECT (memory.create_agent('auto', 'Be brief.', auto_reply => true)).id").fetchone()[0]
    cids = [r[0] for r in conn.execute("SELECT (memory.create_conversation(%s)).id FROM generate_series(1, %s)", (agent, n)).fetchall()]
    t = time.perf_counter()
    with conn.transaction():
        conn.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content, seq, token_count)
                        SELECT c, 'user', 'Hello, what can you do?', 0, 0 FROM unnest(%s::uuid[]) AS c""", (cids,))
    while True:
        done = admin.execute("SELECT count(*) FROM memory.jobs WHERE kind = 'reply' AND status IN ('done', 'failed') "
                             "AND conversation_id = ANY (%s)", (cids,)).fetchone()[0]
        if done >= n or time.perf_counter() - t > 600:
            break
        time.sleep(0.01)
    elapsed = time.perf_counter() - t
    answers = conn.execute("SELECT count(*) FROM memory.conversation_messages WHERE role = 'assistant' AND conversation_id = ANY (%s)", (cids,)).fetchone()[0]
    conn.close()
    admin.close()
    return answers, elapsed


def bench_replies(port, n):
    with connect(port, "postgres") as admin:
        wait_for_worker(admin)
    answers, elapsed = answer_replies(port, n)
    print(f"  reply jobs: {answers} of {n} answered in {elapsed:.2f} s: {answers / elapsed:.0f} replies/s "
          f"(stand-in answering at once, memory.worker_concurrency = 8)", flush=True)
    return {"jobs": n, "answered": answers, "seconds": elapsed, "replies_per_s": answers / elapsed}


def bench_reply_concurrency(port, llm, smoke):
    """Reply jobs per second with the stand-in answering after a fixed delay, at 1, 4 and 8 calls
    in flight (memory.worker_concurrency; the benchmark's one user may use every slot), next to
    the ideal of `in flight / delay`."""
    delays, levels = ((0.05,), (1, 4)) if smoke else ((0.5, 2.0), (1, 4, 8))
    rows = []
    try:
        for delay in delays:
            llm.delay = delay
            for level in levels:
                setting(port, "memory.worker_concurrency", level)
                setting(port, "memory.worker_user_concurrency", level)
                n = 4 * level
                answers, elapsed = answer_replies(port, n)
                rate, ideal = answers / elapsed, level / delay
                rows.append({"delay_s": delay, "in_flight": level, "jobs": n, "answered": answers,
                             "replies_per_s": rate, "ideal_per_s": ideal})
                print(f"  replies with a {delay} s stand-in, {level} in flight: {answers} of {n} in {elapsed:.2f} s = "
                      f"{rate:.2f}/s ({rate / ideal:.2f}× the ideal {ideal:.2f}/s)", flush=True)
    finally:
        llm.delay = 0.0
        setting(port, "memory.worker_concurrency", 8)
        setting(port, "memory.worker_user_concurrency", 2)
    return rows


def bench_limit_check(port, seconds):
    pgbench = f"{BIN}/pgbench"
    conn = connect(port)
    cid = conn.execute("SELECT (memory.create_conversation('a0000000-0000-0000-0000-0000000000a6')).id").fetchone()[0]
    conn.close()
    path = "/tmp/memory_ext_bench_limit.sql"
    with open(path, "w") as f:
        f.write(f"SELECT memory.add_message('{cid}', 'user', 'What is the weather in Paris this weekend?');\n")
    env = dict(os.environ, PGOPTIONS=f"-c memory.user_id={USER_ID}")
    res = {}
    for label, limit in (("no limit", 0), ("limit checked", 1_000_000_000)):
        setting(port, "memory.max_messages_per_minute", limit)
        out = subprocess.run([pgbench, "-n", "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "-f", path, "-c", "1", "-T", str(seconds), "bench"],
                             capture_output=True, text=True, env=env, check=True).stdout
        res[label] = float(out.split("tps = ")[1].split()[0])
    setting(port, "memory.max_messages_per_minute", 0)
    print(f"  add_message, 1 client: {res['no limit']:.0f}/s without a limit, {res['limit checked']:.0f}/s with "
          f"memory.max_messages_per_minute checked ({res['limit checked'] / res['no limit']:.2f}×)", flush=True)
    return {"add_message_per_s_no_limit": res["no limit"], "add_message_per_s_limit_checked": res["limit checked"]}


def run(port, llm_port, smoke):
    llm = FakeLLM(llm_port)
    try:
        setup(port, llm_port)
        setting(port, "memory.worker_user_concurrency", 8)  # the benchmark's one user may use every slot
        return {"chat": bench_chat(port, llm_port, 1000 if smoke else 10_000, 3 if smoke else 30),
                "replies": bench_replies(port, 30 if smoke else 1000),
                "reply_concurrency": bench_reply_concurrency(port, llm, smoke),
                "limit_check": bench_limit_check(port, 2 if smoke else 10)}
    finally:
        llm.stop()


def run_replies(port, llm_port, out_dir):
    """The worker's reply throughput alone (bench/run.sh --replies): with a stand-in answering at
    once, and with one answering after 0.5 s and 2 s at 1, 4 and 8 calls in flight."""
    import datetime
    import platform
    llm = FakeLLM(llm_port)
    try:
        setup(port, llm_port)
        setting(port, "memory.worker_user_concurrency", 8)
        replies = bench_replies(port, 1000)
        levels = bench_reply_concurrency(port, llm, False)
    finally:
        llm.stop()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Reply jobs: the worker's throughput", "",
             f"{date}, {platform.machine()}, {os.cpu_count()} cores; `bench/run.sh --replies`. The stand-in LLM "
             "(tests/support/fake_llm.py) on 127.0.0.1; one user's 1,000 (then 4 × calls in flight) conversations "
             "each get a user message through a plain INSERT, and the agent's auto_reply queues a reply job.", "",
             f"Stand-in answering at once, memory.worker_concurrency = 8: {replies['answered']} of {replies['jobs']} "
             f"replies in {replies['seconds']:.2f} s = **{replies['replies_per_s']:.0f} replies/s**.", "",
             "| stand-in delay | calls in flight | jobs | replies/s | × ideal (in flight / delay) |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['delay_s']} s | {r['in_flight']} | {r['jobs']} | {r['replies_per_s']:.2f} | "
              f"{r['replies_per_s'] / r['ideal_per_s']:.2f} |" for r in levels]
    path = os.path.join(out_dir, "replies.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"== wrote {path}", flush=True)


def report_lines(t):
    c, r, lc = t["chat"], t["replies"], t["limit_check"]
    return ["", "## Chat turns (stand-in LLM on 127.0.0.1 answering at once, in a process of its own)", "",
            "| measure | value |", "|---|---:|",
            f"| `memory.chat` at {c['messages']:,} messages ({c['window_messages']} in the window), client ms | {c['chat_ms']:.2f} |",
            f"| direct HTTP call of the same request, ms | {c['direct_http_ms']:.2f} |",
            f"| **overhead of memory.chat per turn**, ms | **{c['overhead_ms']:.2f}** |",
            f"| `build_context` of the same window alone, ms | {c['build_context_ms']:.2f} |",
            f"| **overhead ÷ that build_context** | **{c['overhead_ms'] / c['build_context_ms']:.2f}×** |",
            f"| of which: the two appends (user message, answer), ms each (`add_message`) | {c['add_message_ms']:.2f} |",
            f"| the rest: wrappers, usage row, the HTTP client on its thread, ms | {c['overhead_ms'] - c['build_context_ms'] - 2 * c['add_message_ms']:.2f} |",
            f"| the application loop it replaces (add_message, build_context, HTTP, add_message), ms | {c['app_loop_ms']:.2f} |",
            f"| reply jobs answered by the worker, replies/s ({r['answered']} of {r['jobs']}) | {r['replies_per_s']:.0f} |",
            f"| add_message/s without a per-user limit, 1 client | {lc['add_message_per_s_no_limit']:.0f} |",
            f"| add_message/s with `memory.max_messages_per_minute` checked | {lc['add_message_per_s_limit_checked']:.0f} "
            f"({lc['add_message_per_s_limit_checked'] / lc['add_message_per_s_no_limit']:.2f}×) |",
            "", "Reply jobs with a slow stand-in (it answers after the delay), by `memory.worker_concurrency`; "
            "the ideal is calls in flight / delay:", "",
            "| stand-in delay | calls in flight | jobs | replies/s | × ideal |", "|---:|---:|---:|---:|---:|"] + [
            f"| {r['delay_s']} s | {r['in_flight']} | {r['jobs']} | {r['replies_per_s']:.2f} | {r['replies_per_s'] / r['ideal_per_s']:.2f} |"
            for r in t.get("reply_concurrency", [])]
