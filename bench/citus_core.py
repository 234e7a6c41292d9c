"""What Citus's routing costs memory_ext's own calls, ahead of the distributed layout
(bench/citus.sh runs it; results in bench/results/citus-core.md).

The same data on one node and on a coordinator with two workers, where `conversations` and
`conversation_messages` are distributed by conversation (co-located) the way the distributed
layout will do it: keys that contain the conversation, the triggers on every shard. This is not
the layout itself: the policies are dropped on both sides (Citus refuses today's, see
docs/scaling.md) and every call runs as the superuser, so the figures are the routing's cost on
add_message, build_context and search_messages, not the rule's. Each scale (total messages,
500 per conversation) is loaded afresh on both sides and measured side by side; a call that
Citus refuses is reported with its error, not left out.
"""
import argparse
import random
import statistics
import time
import uuid

import psycopg

from support.citus_layout import DISTRIBUTE, DROP_POLICIES  # tests/ is on PYTHONPATH (bench/citus.sh)

USER = "11111111-1111-1111-1111-111111111111"

def prepare(dsn, citus, conversations, messages):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP EXTENSION IF EXISTS memory_ext CASCADE")
        c.execute("CREATE EXTENSION memory_ext CASCADE")
        c.execute(DROP_POLICIES)
        if citus:
            c.execute(DISTRIBUTE)
        c.execute("SELECT set_config('memory.user_id', %s, false)", (USER,))
        agent = str(uuid.uuid4())
        ids = [c.execute("SELECT (memory.create_conversation(%s, %s)).id", (agent, f"c{i}")).fetchone()[0]
               for i in range(conversations)]
        # each conversation's messages in one INSERT … SELECT through the triggers
        for cid in ids:
            c.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content)
                         SELECT %s, CASE WHEN g %% 2 = 1 THEN 'user' ELSE 'assistant' END,
                                'some words of message ' || g
                           FROM generate_series(1, %s) g""", (cid, messages))
        c.execute("ANALYZE memory.conversations, memory.conversation_messages")
        size_fn = "citus_total_relation_size" if citus else "pg_total_relation_size"
        size = c.execute(f"SELECT {size_fn}('memory.conversation_messages')").fetchone()[0]
        count = c.execute("SELECT count(*) FROM memory.conversation_messages").fetchone()[0]
        return ids, size / count


def per_call(c, sql, args_list):
    start = time.perf_counter()
    for args in args_list:
        c.execute(sql, args, prepare=True).fetchall()
    return (time.perf_counter() - start) / len(args_list) * 1e6


CALLS = {
    "add_message": "SELECT memory.add_message(%s, 'user', 'one more message to the conversation')",
    "build_context": "SELECT memory.build_context(%s, 2000)",
    # a word and a number: one message in 500 matches, the first page of 20 is returned
    "search_messages": "SELECT memory.search_messages('message ' || %s)",
}


def measure(dsn, citus, conversations, messages, calls, reps):
    ids, bytes_per_message = prepare(dsn, citus, conversations, messages)
    rng = random.Random(5)
    out = {"bytes": bytes_per_message}
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (USER,))
        for name, sql in CALLS.items():
            rounds = []
            try:
                for rep in range(reps + 1):  # the first round warms caches and plans, and is not counted
                    picks = ([(rng.randint(1, messages),) for _ in range(calls)] if name == "search_messages"
                             else [(rng.choice(ids),) for _ in range(calls)])
                    took = per_call(c, sql, picks)
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
    for total in scales:
        conversations = max(1, total // a.messages)
        started = time.perf_counter()
        one = measure(a.single, False, conversations, a.messages, a.calls, a.reps)
        three = measure(a.coordinator, True, conversations, a.messages, a.calls, a.reps)
        print(f"{total:,} messages measured in {time.perf_counter() - started:.0f} s", flush=True)
        rows = [("bytes", "bytes per message with its indexes", 2),
                ("add_message", "add_message, µs per call", 1),
                ("build_context", "build_context (2,000 tokens), µs per call", 1),
                ("search_messages", "search_messages (first page of 20), µs per call", 1)]
        for key, label, digits in rows:
            lines.append(f"| {total:,} | {label} | {cell(one[key])} | {cell(three[key])} | {ratio(one[key], three[key], digits)} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write("# memory_ext's calls on one node and routed by Citus (bench/citus.sh)\n\n"
                    f"{a.messages} messages per conversation, all of one user; one client, prepared statements, median "
                    f"of {a.reps} rounds of {a.calls} calls. `conversations` and `conversation_messages` distributed by "
                    "conversation on three nodes; policies dropped on both sides and every call as the superuser: the "
                    "routing's cost, not the rule's (see docs/scaling.md).\n\n" + text + "\n")


if __name__ == "__main__":
    main()
