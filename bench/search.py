"""search_messages at scale: one user with 10,000 messages among 1,000,000 messages of 1,000
users (smoke: 20 users), p50/p95 of typical queries next to the naive way (ILIKE over the
user's messages under RLS) in the same run."""
import json
import random
import statistics
import time
import uuid

import psycopg


def _messages(rng, prose, n):
    words = ["invoice", "paris", "refund", "deploy", "kubernetes", "breakfast", "python", "weather", "contract", "flight"]
    out = []
    for i in range(n):
        text = prose(rng, rng.randint(8, 40))
        if rng.random() < 0.05:
            text += " " + rng.choice(words)
        out.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return out


def setup(port, prose, smoke):
    users, per_user, focus_convs = (20, 50, 4) if smoke else (1000, 1000, 10)
    with psycopg.connect(f"host=127.0.0.1 port={port} dbname=postgres user=postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS search WITH (FORCE)")
        c.execute("CREATE DATABASE search")
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = 'bench'").fetchone():
            c.execute("CREATE ROLE bench LOGIN")
    with psycopg.connect(f"host=127.0.0.1 port={port} dbname=search user=postgres", autocommit=True) as c:
        c.execute("CREATE EXTENSION memory_ext CASCADE")
        c.execute("ALTER DATABASE search SET memory.user_id_roles = 'bench'")
    rng = random.Random(99)
    conn = psycopg.connect(f"host=127.0.0.1 port={port} dbname=search user=bench", autocommit=True)
    t = time.perf_counter()
    focus = str(uuid.UUID(int=42))
    plan = [(focus, focus_convs)] + [(str(uuid.uuid4()), 1) for _ in range(users - 1)]
    for user, convs in plan:
        conn.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
        for _ in range(convs):
            conn.execute("SELECT memory.import_conversation(%s, agent_id => %s)",
                         (json.dumps(_messages(rng, prose, per_user)), str(uuid.UUID(int=7))))
    conn.execute("SELECT set_config('memory.user_id', %s, false)", (focus,))
    with psycopg.connect(f"host=127.0.0.1 port={port} dbname=search user=postgres", autocommit=True) as c:
        total = c.execute("SELECT count(*) FROM memory.conversation_messages").fetchone()[0]
        c.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk load
    mine = conn.execute("SELECT count(*) FROM memory.conversation_messages").fetchone()[0]
    print(f"  stored {total} messages of {users} users in {time.perf_counter() - t:.0f} s; the searching user has {mine}", flush=True)
    return conn, total, mine, users


def _times(fn, reps):
    fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out), sorted(out)[int(len(out) * 0.95) - 1] if len(out) > 1 else out[0]


def run(port, prose, smoke):
    conn, total, mine, users = setup(port, prose, smoke)
    reps = 3 if smoke else 30
    rows = []
    for label, q in [("rare word", "kubernetes"), ("two words", "paris weather"), ("phrase", '"the weather"'),
                     ("common word", "the"), ("or / not", "refund or invoice -contract")]:
        n = len(conn.execute("SELECT memory.search_messages(%s, \"limit\" => 20)->'results'", (q,)).fetchone()[0])
        p50, p95 = _times(lambda: conn.execute("SELECT memory.search_messages(%s, \"limit\" => 20)", (q,)).fetchone(), reps)
        word = q.strip('"').split()[0]
        naive50, _ = _times(lambda: conn.execute(
            "SELECT id, content FROM memory.conversation_messages WHERE content ILIKE %s ORDER BY created_at DESC LIMIT 20",
            (f"%{word}%",)).fetchall(), max(1, reps // 5))
        rows.append({"query": label, "q": q, "results": n, "p50_ms": p50, "p95_ms": p95, "naive_ilike_p50_ms": naive50,
                     "messages_total": total, "messages_of_user": mine, "users": users})
        print(f"  {label:<12} {q!r:<32} {n:>3} results  p50 {p50:7.2f} ms  p95 {p95:7.2f} ms   "
              f"ILIKE scan p50 {naive50:8.1f} ms (x{naive50 / p50:.0f})", flush=True)
    rows += views(port, conn, total, mine, users, reps)
    conn.close()
    return rows


# The message figures as 0.2.0 computed them, aggregating the messages on read: the peer of
# memory.message_days (the daily rollup) that the views read now, in the same run.
ON_READ_DAILY = """(SELECT (m.created_at AT TIME ZONE 'UTC')::date AS day, c.agent_id, m.token_count, m.conversation_id
                      FROM memory.conversation_messages m JOIN memory.conversations c ON c.id = m.conversation_id) AS v"""
VIEWS = [("usage_daily, last 30 days", "SELECT day, agent_id, sum(messages), sum(stored_tokens) FROM memory.usage_daily "
          "WHERE day >= current_date - 30 GROUP BY 1, 2",
          f"SELECT day, agent_id, count(*), sum(token_count) FROM {ON_READ_DAILY} WHERE day >= current_date - 30 GROUP BY 1, 2"),
         ("tool_usage", "SELECT * FROM memory.tool_usage", None),
         ("conversation_activity, top 10 of 7 days", "SELECT conversation_id, sum(messages) AS n FROM memory.conversation_activity "
          "WHERE day >= current_date - 7 GROUP BY 1 ORDER BY n DESC LIMIT 10",
          f"SELECT conversation_id, count(*) AS n FROM {ON_READ_DAILY} WHERE day >= current_date - 7 GROUP BY 1 ORDER BY n DESC LIMIT 10"),
         ("agent_performance", "SELECT * FROM memory.agent_performance", None)]


def views(port, conn, total, mine, users, reps):
    """The analytics views on the same data: as the user (its own 10,000 messages, RLS) and as an
    operator (a superuser: all of them), next to aggregating the messages on read where the
    views read the daily rollup."""
    out = []
    with psycopg.connect(f"host=127.0.0.1 port={port} dbname=search user=postgres", autocommit=True) as su:
        for label, q, on_read in VIEWS:
            user50, _ = _times(lambda: conn.execute(q).fetchall(), max(1, reps // 3))
            all50, _ = _times(lambda: su.execute(q).fetchall(), 1 if reps < 30 else 3)
            row = {"query": f"view {label}", "q": q, "results": len(conn.execute(q).fetchall()), "p50_ms": user50,
                   "p95_ms": all50, "naive_ilike_p50_ms": None, "messages_total": total, "messages_of_user": mine,
                   "users": users, "on_read_user_ms": None, "on_read_operator_ms": None}
            line = f"  view {label:<40} as the user p50 {user50:8.2f} ms   as an operator (all {total} messages) {all50:9.1f} ms"
            if on_read:
                row["on_read_user_ms"], _ = _times(lambda: conn.execute(on_read).fetchall(), max(1, reps // 3))
                row["on_read_operator_ms"], _ = _times(lambda: su.execute(on_read).fetchall(), 1 if reps < 30 else 3)
                line += (f"   | on read: user {row['on_read_user_ms']:.2f} ms (x{row['on_read_user_ms'] / user50:.0f}), "
                         f"operator {row['on_read_operator_ms']:.1f} ms (x{row['on_read_operator_ms'] / all50:.0f})")
            out.append(row)
            print(line, flush=True)
    return out


def report_lines(rows):
    r0 = rows[0]
    lines = ["", f"## Search ({r0['messages_of_user']} messages of one user among {r0['messages_total']} of {r0['users']} users)", "",
             "| query | results | p50 ms | p95 ms | naive ILIKE p50 ms | × |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['query']} `{r['q']}` | {r['results']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
              f"{r['naive_ilike_p50_ms']:.1f} | {r['naive_ilike_p50_ms'] / r['p50_ms']:.0f} |"
              for r in rows if r["naive_ilike_p50_ms"] is not None]
    lines += ["", "## Analytics views on the same data (median ms)", "",
              "The message figures read `memory.message_days` (the worker's daily rollup and the messages after each conversation's mark); \"on read\" aggregates the",
              "messages themselves in the same run (what 0.2.0's views did).", "",
              "| view | as the user (its own messages, RLS) | on read | as an operator (all messages) | on read |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['query'][5:]} | {r['p50_ms']:.1f} | {_ms(r.get('on_read_user_ms'))} | {r['p95_ms']:.1f} | "
              f"{_ms(r.get('on_read_operator_ms'))} |" for r in rows if r["naive_ilike_p50_ms"] is None]
    return lines


def _ms(v):
    return "—" if v is None else f"{v:.1f}"
