"""Where an append's server time goes: `add_message` under pgbench (one client, one conversation)
with track_functions = 'all', then each memory_ext function's calls and self time per append, next
to the plain table's insert rate in the same run. Run by `bench/run.sh --append-profile`.

Self time is the time inside a function minus the functions it calls (SQL statements it runs count
as its own). Functions PostgreSQL inlines do not appear: their cost is their caller's."""
import os
import re
import subprocess
import time

import psycopg

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
TEXT = "What is the weather in Paris this weekend? I would like to plan a walk along the river."


def pgbench(port, sql, seconds, env):
    path = "/tmp/memory_ext_append_profile.sql"
    with open(path, "w") as f:
        f.write(sql + "\n")
    out = subprocess.run([PGBENCH, "-n", "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "-f", path, "-c", "1",
                          "-T", str(seconds), "bench"], capture_output=True, text=True, env=env, check=True).stdout
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


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
            "functions": [(name, calls / n, self_ms * 1000 / n, total_ms * 1000 / n) for name, calls, self_ms, total_ms in rows]}


def report_lines(r):
    lines = ["", "## One client appending to one conversation", "",
             "| | messages/s | × plain table |", "|---|---:|---:|",
             f"| plain table (floor) | {r['plain']:.0f} | 1.00 |",
             f"| add_message | {r['add_message']:.0f} | {r['add_message'] / r['plain']:.2f} |",
             f"| add_message with track_functions = all | {r['profiled']:.0f} | {r['profiled'] / r['plain']:.2f} |",
             "", f"## Server time per append, by function ({r['appends']} appends)", "",
             "| function | calls per append | self µs | total µs |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {calls:.0f} | {self_us:.1f} | {total_us:.1f} |" for name, calls, self_us, total_us in r["functions"]]
    return lines
