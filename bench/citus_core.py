"""What Citus costs memory_ext's own calls (bench/citus.sh runs it; results in
bench/results/citus-core.md).

The same data on one node and on a coordinator with two workers, where the conversation's tables
are distributed by conversation (co-located) by the distributed layout (sql/citus/, applied by
tests/support/citus_layout.py), measured two ways:

- routing: the policies dropped on both sides and every call made by the superuser — what the
  routing alone costs add_message, build_context and search_messages;
- rule: a user's calls through an ordinary login, one transaction per call as PostgREST makes
  them — on one node under memory_ext's policies, on three under the rule on the rows with the
  caller passed to the workers (memory.pass_caller: memory.node_secret is set on every node).

The conversations belong to 20 users; the calls are one user's (its conversations, its search).
Each scale (total messages, 500 per conversation) is loaded afresh on both sides and measured
side by side; a call that Citus refuses is reported with its error, not left out.
"""
import argparse
import random
import statistics
import time
import uuid

import psycopg

# tests/ is on PYTHONPATH (bench/citus.sh)
from support.citus_layout import DROP_POLICIES, ROUTE_BY_CONVERSATION, RULE_ON_ROWS, apply

USERS = [str(uuid.UUID(int=0x1111 + i)) for i in range(20)]  # conversation i is USERS[i % 20]'s
ME = USERS[0]
LOGIN = "bench_app"  # an application server's login: it may assert memory.user_id


def prepare(dsn, citus, rule, conversations, messages):
    """Loads the data; returns ME's conversations, the bytes per message and, for the layout under
    the rule, the seconds its conversion of the loaded install took."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP EXTENSION IF EXISTS memory_ext CASCADE")
        c.execute("CREATE EXTENSION memory_ext CASCADE")
        if citus and not rule:
            apply(c, ROUTE_BY_CONVERSATION)
        elif not citus and not rule:
            apply(c, DROP_POLICIES)
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LOGIN,)).fetchone():
            c.execute(f"CREATE ROLE {LOGIN} LOGIN")
        c.execute(f"ALTER DATABASE {c.info.dbname} SET memory.user_id_roles = '{LOGIN}'")
        agent = str(uuid.uuid4())
        ids = []
        for i in range(conversations):
            c.execute("SELECT set_config('memory.user_id', %s, false)", (USERS[i % len(USERS)],))
            ids.append(c.execute("SELECT (memory.create_conversation(%s, %s)).id", (agent, f"c{i}")).fetchone()[0])
        # each conversation's messages in one INSERT … SELECT through the triggers
        for cid in ids:
            c.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content)
                         SELECT %s, CASE WHEN g %% 2 = 1 THEN 'user' ELSE 'assistant' END,
                                'some words of message ' || g
                           FROM generate_series(1, %s) g""", (cid, messages))
        converted = None
        if citus and rule:
            # the install converted as scripts/distribute.sh does it (its rule's backfill rewrites
            # every message: VACUUM FULL, so that the size counts the rows and not their old versions)
            started = time.perf_counter()
            apply(c, ROUTE_BY_CONVERSATION, RULE_ON_ROWS)
            converted = time.perf_counter() - started
            c.execute("VACUUM FULL memory.conversations, memory.conversation_messages")
        c.execute("ANALYZE memory.conversations, memory.conversation_messages")
        size_fn = "citus_total_relation_size" if citus else "pg_total_relation_size"
        size = c.execute(f"SELECT {size_fn}('memory.conversation_messages')").fetchone()[0]
        count = c.execute("SELECT count(*) FROM memory.conversation_messages").fetchone()[0]
        return ids[::len(USERS)], size / count, converted


def per_call(c, sql, args_list, rule, citus):
    start = time.perf_counter()
    for args in args_list:
        if rule:  # one transaction per call, as PostgREST makes it; the caller passed to the workers
            with c.transaction():
                if citus:
                    c.execute("SELECT memory.pass_caller()", prepare=True)
                c.execute(sql, args, prepare=True).fetchall()
        else:
            c.execute(sql, args, prepare=True).fetchall()
    return (time.perf_counter() - start) / len(args_list) * 1e6


CALLS = {
    "add_message": "SELECT memory.add_message(%s, 'user', 'one more message to the conversation')",
    "build_context": "SELECT memory.build_context(%s, 2000)",
    # a word and a number: one message in 500 matches, the first page of 20 is returned
    "search_messages": "SELECT memory.search_messages('message ' || %s)",
}


def measure(dsn, citus, rule, conversations, messages, calls, reps):
    ids, bytes_per_message, converted = prepare(dsn, citus, rule, conversations, messages)
    rng = random.Random(5)
    out = {"bytes": bytes_per_message, "convert": "—" if converted is None else converted * 1e6 / (conversations * messages)}
    with psycopg.connect(psycopg.conninfo.make_conninfo(dsn, user=LOGIN) if rule else dsn, autocommit=True) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (ME,))
        for name, sql in CALLS.items():
            rounds = []
            try:
                for rep in range(reps + 1):  # the first round warms caches and plans, and is not counted
                    picks = ([(rng.randint(1, messages),) for _ in range(calls)] if name == "search_messages"
                             else [(rng.choice(ids),) for _ in range(calls)])
                    took = per_call(c, sql, picks, rule, citus)
                    if rep:
                        rounds.append(took)
                out[name] = statistics.median(rounds)
            except psycopg.Error as e:
                out[name] = f"refused: {e.diag.message_primary}"
    return out


def cell(v):
    return f"{v:,.0f}" if isinstance(v, float) else str(v)


def ratio(a, b, digits):
    return f"{b / a:.{digits}f}×" if isinstance(a, float) and isinstance(b, float) else "—"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--single", required=True, help="DSN of one node with memory_ext")
    ap.add_argument("--coordinator", required=True, help="DSN of the Citus coordinator")
    ap.add_argument("--scales", default="100000,1000000", help="total messages, comma-separated")
    ap.add_argument("--messages", type=int, default=500, help="per conversation")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out")
    a = ap.parse_args()
    scales = [int(x) for x in a.scales.split(",")]
    lines = ["| messages | | one node | three nodes | three / one |", "|---|---|---|---|---|"]
    rows = [("bytes", "bytes per message with its indexes", 2),
            ("add_message", "`add_message`, µs per call", 1),
            ("build_context", "`build_context` (2,000 tokens), µs per call", 1),
            ("search_messages", "`search_messages` (first page of 20), µs per call", 1),
            ("convert", "`scripts/distribute.sh` on the loaded install, µs per message", 1)]
    for total in scales:
        conversations = max(len(USERS), total // a.messages)
        for rule, how in ((False, "routing: no policies, the superuser"), (True, "under the rule: a user")):
            started = time.perf_counter()
            one = measure(a.single, False, rule, conversations, a.messages, a.calls, a.reps)
            three = measure(a.coordinator, True, rule, conversations, a.messages, a.calls, a.reps)
            print(f"{total:,} messages, {how}: measured in {time.perf_counter() - started:.0f} s", flush=True)
            for key, label, digits in rows:
                if key == "convert" and not rule:
                    continue
                lines.append(f"| {total:,} | {label} — {how} | {cell(one[key])} | {cell(three[key])} | "
                             f"{ratio(one[key], three[key], digits)} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write("# memory_ext's calls on one node and routed by Citus (bench/citus.sh)\n\n"
                    f"{a.messages} messages per conversation, the conversations of {len(USERS)} users, the calls one "
                    f"user's; one client, prepared statements, median of {a.reps} rounds of {a.calls} calls. "
                    "The conversation's tables distributed by conversation on three nodes (sql/citus/). Routing: "
                    "policies dropped on both sides, every call as the superuser (its search covers every "
                    "conversation). Under the rule: an ordinary login, one transaction per call; one node under "
                    "memory_ext's policies, three under the rule on the rows with the caller passed, the loaded "
                    "install converted by the layout's scripts (see docs/scaling.md).\n\n" + text + "\n")


if __name__ == "__main__":
    main()
