"""Search and listing for users with many readable conversations, next to an ordinary user's in
one run: 100 own conversations (the ordinary user), 30,000 own conversations, 20,000 accepted
shares from 200 owners, and a share bomb (20,000 pending offers from one user, 10 in effect) on
top of an ordinary user's data. Among 200,000 messages of 1,000 other users. Server time of
each call (EXPLAIN ANALYZE), medians, and the ratio to the ordinary user's time."""
import uuid

import psycopg
from sharing import _server_ms

AGENT = "a0000000-0000-0000-0000-000000005ca1"


def _own(su, user, n, title):
    """n conversations of user, one message each: 'invoice number <i> token<user-tag><i>'."""
    su.execute("""INSERT INTO memory.conversations (agent_id, user_id, title)
                  SELECT %s, %s, %s || g FROM generate_series(1, %s) g""", (AGENT, user, title, n))
    su.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content)
                  SELECT c.id, 'user', 'invoice number ' || c.title || ' token' || replace(c.title, ' ', '')
                    FROM memory.conversations c WHERE c.user_id = %s""", (user,))


def run(port, smoke):
    dsn = f"host=127.0.0.1 port={port} user=postgres"
    with psycopg.connect(dsn + " dbname=postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS bench_scale")
        c.execute("CREATE DATABASE bench_scale")
    su = psycopg.connect(dsn + " dbname=bench_scale", autocommit=True)
    su.execute("CREATE EXTENSION IF NOT EXISTS memory_ext CASCADE")
    if not su.execute("SELECT 1 FROM pg_roles WHERE rolname = 'app'").fetchone():
        su.execute("CREATE ROLE app LOGIN")
    su.execute("ALTER DATABASE bench_scale SET memory.user_id_roles = 'app'")
    su.execute("GRANT USAGE ON SCHEMA memory TO app")
    k = 10 if smoke else 1
    ordinary, own_many, shared_many, bombed, bomber = (str(uuid.uuid4()) for _ in range(5))
    print("== many conversations: loading", flush=True)
    # everyone else: 1,000 users with 200 messages each, in one conversation per user
    others = su.execute("""INSERT INTO memory.conversations (agent_id, user_id, title)
                           SELECT %s, gen_random_uuid(), 'other' FROM generate_series(1, %s) RETURNING id""",
                        (AGENT, 1000 // k)).fetchall()
    su.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content)
                  SELECT o.id, 'user', 'invoice number ' || g || ' for someone else'
                    FROM unnest(%s::uuid[]) AS o(id), generate_series(1, 200) g""", ([o[0] for o in others],))
    _own(su, ordinary, 100, "ordinary ")
    _own(su, own_many, 30_000 // k, "own ")
    _own(su, bombed, 100, "bombed ")
    owners = [str(uuid.uuid4()) for _ in range(200 // k)]
    for o in owners:
        _own(su, o, 100, f"by {o[:8]} ")
    su.execute("""INSERT INTO memory.conversation_members (conversation_id, user_id, role, owner_id, accepted_at)
                  SELECT c.id, %s, 'viewer', c.user_id, now() FROM memory.conversations c WHERE c.user_id = ANY(%s::uuid[])""",
               (shared_many, owners))
    _own(su, bomber, 20_000 // k, "bomb ")
    su.execute("""INSERT INTO memory.conversation_members (conversation_id, user_id, role, owner_id, accepted_at)
                  SELECT c.id, %s, 'viewer', c.user_id, CASE WHEN row_number() OVER (ORDER BY c.id) <= 10 THEN now() END
                    FROM memory.conversations c WHERE c.user_id = %s""", (bombed, bomber))
    su.execute("VACUUM ANALYZE")
    reps = 3 if smoke else 11
    users = [("ordinary user: 100 own conversations", ordinary, "tokenordinary7"),
             (f"{30_000 // k:,} own conversations", own_many, "tokenown7"),
             (f"{len(owners) * 100:,} accepted shares from {len(owners)} owners", shared_many, f"tokenby{owners[0][:8]}7"),
             (f"bombed: 100 own, {20_000 // k:,} pending offers, 10 in effect", bombed, "tokenbombed7")]
    calls = [("search, a rare word", "SELECT memory.search_messages(%s)", "rare"),
             ("search, a word in every message", "SELECT memory.search_messages('invoice')", None),
             ("list_conversations()", "SELECT * FROM memory.list_conversations()", None)]
    rows = []
    for label, user, rare in users:
        su.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
        su.execute("SET ROLE app")
        for name, sql, arg in calls:
            args = (rare,) if arg else ()
            _server_ms(su, sql, args, 2)
            rows.append({"user": label, "call": name, "ms": _server_ms(su, sql, args, reps)})
        su.execute("RESET ROLE")
    base = {r["call"]: r["ms"] for r in rows if r["user"] == users[0][0]}
    for r in rows:
        r["ratio"] = r["ms"] / base[r["call"]]
        print(f"  {r['user']:<58} {r['call']:<34} {r['ms']:8.2f} ms  x{r['ratio']:.1f}", flush=True)
    su.close()
    return rows


def report_lines(rows):
    lines = ["", "## Search and listing with many readable conversations (server time, median ms)", "",
             "Each user's calls as that user (role `app`, identity in memory.user_id), among 200,000 messages of "
             "1,000 other users; × is the ratio to the ordinary user's time for the same call. Every message of "
             "these users holds 'invoice', so the common-word search ranks all of a user's readable messages "
             "before it cuts the page: its cost follows the number of hits.", "",
             "| user | call | ms | × ordinary |", "|---|---|---:|---:|"]
    lines += [f"| {r['user']} | {r['call']} | {r['ms']:.2f} | {r['ratio']:.1f} |" for r in rows]
    return lines
