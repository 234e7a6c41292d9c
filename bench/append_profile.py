"""Where an append's server time goes: `add_message` under pgbench (one client, one conversation)
with track_functions = 'all', then each memory_ext function's calls and self time per append, next
to the plain table's insert rate in the same run. Run by `bench/run.sh --append-profile`.

Two more floors show what no trigger code can win back: the messages table alone (its indexes, its
foreign key and RLS, with memory_ext's triggers disabled) and the same with the search words
computed inline, for single-row appends and for one 10,000-row INSERT ... SELECT. pgbench runs every
statement prepared (-M prepared), so that each row compares execution, not the planning of a
plain INSERT under RLS (add_message's own statements are planned once per session anyway).

Self time is the time inside a function minus the functions it calls (SQL statements it runs count
as its own). Functions PostgreSQL inlines do not appear: their cost is their caller's."""
import contextlib
import os
import re
import statistics
import subprocess
import time

import psycopg

from support.pg import BIN

PGBENCH = f"{BIN}/pgbench"
TEXT = "What is the weather in Paris this weekend? I would like to plan a walk along the river."


def pgbench(port, sql, seconds, env):
    path = "/tmp/memory_ext_append_profile.sql"
    with open(path, "w") as f:
        f.write(sql + "\n")
    out = subprocess.run([PGBENCH, "-n", "-M", "prepared", "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "-f", path, "-c", "1",
                          "-T", str(seconds), "bench"], capture_output=True, text=True, env=env, check=True).stdout
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


@contextlib.contextmanager
def triggers_off(admin):
    """memory_ext's own triggers disabled (the foreign key's stay): the table alone."""
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("ALTER TABLE memory.conversation_messages DISABLE TRIGGER USER")
        try:
            yield
        finally:
            c.execute("ALTER TABLE memory.conversation_messages ENABLE TRIGGER USER")


def bare_insert(cid, owner, rows_sql, words):
    """An INSERT into the messages table as the triggers would leave it: seq given, the search
    words (with the conversation's and its owner's scope lexemes) computed inline (words) or not."""
    vector = f"memory._search_vector('simple', '{cid}', '{owner}', content, NULL)" if words else "NULL"
    return (f"INSERT INTO memory.conversation_messages (conversation_id, seq, role, content, token_count, search_vector) "
            f"SELECT '{cid}', seq, role, content, 0, {vector} FROM ({rows_sql}) AS r (seq, role, content);")


def bulk(port, user_id, agent, admin, n=10000, reps=5):
    """One INSERT ... SELECT of n rows into a new conversation, median seconds of reps, for each
    route; the routes take turns within each round, so that a slow spell of a shared machine
    falls on all of them."""
    rows = f"SELECT g, 'user', 'message ' || g || ' {TEXT}' FROM generate_series(1, {n}) AS g"
    routes = {
        "plain": lambda cid: f"INSERT INTO profile_plain (conversation_id, seq, role, content) SELECT '{cid}', * FROM ({rows}) AS r;",
        "table": lambda cid: bare_insert(cid, user_id, rows, False),
        "table_words": lambda cid: bare_insert(cid, user_id, rows, True),
        "triggers": lambda cid: f"INSERT INTO memory.conversation_messages (conversation_id, seq, role, content, token_count) "
                                f"SELECT '{cid}', 0, role, content, 0 FROM ({rows}) AS r (seq, role, content);",
    }
    times = {name: [] for name in routes}
    with psycopg.connect(f"host=127.0.0.1 port={port} dbname=bench user=bench", autocommit=True) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (user_id,))
        c.execute("SET memory.summarize_threshold = 2000000000")
        for _ in range(reps):
            for name, sql in routes.items():
                cid = c.execute("SELECT (memory.create_conversation(%s, 'bulk')).id", (agent,)).fetchone()[0]
                with triggers_off(admin) if name.startswith("table") else contextlib.nullcontext():
                    t = time.perf_counter()
                    c.execute(sql(cid))
                    times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def run(port, user_id, agent, seconds):
    admin = f"host=127.0.0.1 port={port} dbname=bench user=postgres"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS profile_plain (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), conversation_id uuid NOT NULL, "
                  "seq bigint NOT NULL, role text NOT NULL, content text NOT NULL, created_at timestamptz DEFAULT now(), "
                  "UNIQUE (conversation_id, seq))")
        c.execute("CREATE SEQUENCE IF NOT EXISTS profile_plain_seq")
        c.execute("GRANT SELECT, INSERT ON profile_plain TO bench")
        c.execute("GRANT USAGE ON SEQUENCE profile_plain_seq TO bench")
        c.execute("SELECT set_config('memory.user_id', %s, false)", (user_id,))
        cid = c.execute("SELECT (memory.create_conversation(%s, 'profile')).id", (agent,)).fetchone()[0]
    env = dict(os.environ, PGOPTIONS=f"-c memory.user_id={user_id} -c memory.summarize_threshold=2000000000")
    plain = pgbench(port, f"INSERT INTO profile_plain (conversation_id, seq, role, content) "
                          f"VALUES ('{cid}', nextval('profile_plain_seq'), 'user', '{TEXT}');", seconds, env)
    appends = pgbench(port, f"SELECT memory.add_message('{cid}', 'user', '{TEXT}');", seconds, env)
    one_row = f"SELECT nextval('profile_plain_seq'), 'user', '{TEXT}'"
    with triggers_off(admin):
        table = pgbench(port, bare_insert(cid, user_id, one_row, False), seconds, env)
        table_words = pgbench(port, bare_insert(cid, user_id, one_row, True), seconds, env)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("ALTER DATABASE bench SET track_functions = 'all'")
        c.execute("SELECT pg_stat_reset()")
    profiled = pgbench(port, f"SELECT memory.add_message('{cid}', 'user', '{TEXT}');", seconds, env)
    time.sleep(1)  # the statistics collector's flush
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("ALTER DATABASE bench RESET track_functions")
        rows = c.execute("""SELECT funcname, calls, self_time, total_time FROM pg_stat_user_functions
                             WHERE schemaname = 'memory' ORDER BY self_time DESC""").fetchall()
    n = max(r[1] for r in rows if r[0] == "add_message")
    return {"plain": plain, "add_message": appends, "profiled": profiled, "appends": n,
            "table": table, "table_words": table_words, "bulk": bulk(port, user_id, agent, admin),
            "functions": [(name, calls / n, self_ms * 1000 / n, total_ms * 1000 / n) for name, calls, self_ms, total_ms in rows]}


def report_lines(r):
    lines = ["", "## One client appending to one conversation", "",
             "| | messages/s | × plain table |", "|---|---:|---:|",
             f"| plain table (floor) | {r['plain']:.0f} | 1.00 |",
             f"| messages table alone: its indexes, foreign key and RLS, no memory_ext trigger | {r['table']:.0f} | {r['table'] / r['plain']:.2f} |",
             f"| the same with the search words computed | {r['table_words']:.0f} | {r['table_words'] / r['plain']:.2f} |",
             f"| add_message | {r['add_message']:.0f} | {r['add_message'] / r['plain']:.2f} |",
             f"| add_message with track_functions = all | {r['profiled']:.0f} | {r['profiled'] / r['plain']:.2f} |",
             "", f"add_message reaches **{r['add_message'] / r['table_words']:.2f}×** the messages table's own rate with "
                 "its search words (the floor no trigger code can pass).",
             "", f"## Server time per append, by function ({r['appends']} appends)", "",
             "| function | calls per append | self µs | total µs |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {calls:.0f} | {self_us:.1f} | {total_us:.1f} |" for name, calls, self_us, total_us in r["functions"]]
    b = r["bulk"]
    lines += ["", "## One INSERT ... SELECT of 10,000 messages (median of 5, the routes taking turns)", "",
              "| | ms | × plain table's rate |", "|---|---:|---:|"]
    for key, label in [("plain", "plain table (floor)"),
                       ("table", "messages table alone: indexes, foreign key, RLS, no memory_ext trigger"),
                       ("table_words", "the same with the search words computed"),
                       ("triggers", "through memory_ext's triggers (as a user, RLS)")]:
        lines.append(f"| {label} | {b[key] * 1000:.0f} | {b['plain'] / b[key]:.2f} |")
    lines += ["", f"Through the triggers: **{b['table_words'] / b['triggers']:.2f}×** the messages table's own rate with its "
                  "search words."]
    return lines
