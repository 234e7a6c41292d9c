"""What Citus's routing costs memory_ext's own calls, ahead of the distributed layout
(bench/citus.sh runs it; results in bench/results/citus-core.md).

The same data on one node and on a coordinator with two workers, where `conversations` and
`conversation_messages` are distributed by conversation (co-located) the way the distributed
layout will do it: keys that contain the conversation, the triggers on every shard. This is not
the layout itself: the policies are dropped on both sides (Citus refuses today's, see
docs/scaling.md) and every call runs as the superuser, so the figures are the routing's cost on
add_message and build_context, not the rule's. (search_messages does not run on distributed
tables yet: Citus cannot push down its result's subquery in the target list.)
"""
import argparse
import random
import statistics
import time
import uuid

import psycopg

USER = "11111111-1111-1111-1111-111111111111"

# the distribution as the layout will do it for the two tables the hot paths touch
DISTRIBUTE = """
SET citus.enable_unsafe_triggers = on;
ALTER TABLE memory.message_embeddings DROP CONSTRAINT message_embeddings_message_id_fkey;
ALTER TABLE memory.conversation_messages DROP CONSTRAINT conversation_messages_pkey,
    ADD PRIMARY KEY (conversation_id, id);
SELECT create_distributed_table('memory.conversations', 'id');
SELECT create_distributed_table('memory.conversation_messages', 'conversation_id', colocate_with => 'memory.conversations');
"""

DROP_POLICIES = """
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT policyname, tablename FROM pg_policies WHERE schemaname = 'memory' LOOP
    EXECUTE format('DROP POLICY %I ON memory.%I', r.policyname, r.tablename);
  END LOOP;
END $$;
"""


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


def measure(dsn, citus, conversations, messages, calls, reps):
    ids, bytes_per_message = prepare(dsn, citus, conversations, messages)
    rng = random.Random(5)
    out = {"bytes": bytes_per_message}
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (USER,))
        rounds = {"add_message": [], "build_context": []}
        for rep in range(reps + 1):  # the first round warms caches and plans, and is not counted
            picks = [(rng.choice(ids),) for _ in range(calls)]
            add = per_call(c, "SELECT memory.add_message(%s, 'user', 'one more message to the conversation')", picks)
            window = per_call(c, "SELECT memory.build_context(%s, 2000)", picks)
            if rep:
                rounds["add_message"].append(add)
                rounds["build_context"].append(window)
        out.update({k: statistics.median(v) for k, v in rounds.items()})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--single", required=True, help="DSN of one node with memory_ext")
    ap.add_argument("--coordinator", required=True, help="DSN of the Citus coordinator")
    ap.add_argument("--conversations", type=int, default=200)
    ap.add_argument("--messages", type=int, default=500, help="per conversation")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out")
    a = ap.parse_args()
    one = measure(a.single, False, a.conversations, a.messages, a.calls, a.reps)
    three = measure(a.coordinator, True, a.conversations, a.messages, a.calls, a.reps)
    lines = ["| | one node | three nodes | three / one |", "|---|---|---|---|",
             f"| bytes per message with its indexes | {one['bytes']:,.0f} | {three['bytes']:,.0f} | {three['bytes'] / one['bytes']:.2f}× |"]
    for k, label in (("add_message", "add_message"), ("build_context", "build_context (2,000 tokens)")):
        lines.append(f"| {label}, µs per call | {one[k]:,.0f} | {three[k]:,.0f} | {three[k] / one[k]:.1f}× |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write("# memory_ext's calls on one node and routed by Citus (bench/citus.sh)\n\n"
                    f"{a.conversations * a.messages:,} messages in {a.conversations:,} conversations; one client, prepared "
                    f"statements, median of {a.reps} rounds of {a.calls} calls. `conversations` and `conversation_messages` "
                    "distributed by conversation on three nodes; policies dropped on both sides and every call as the "
                    "superuser: the routing's cost, not the rule's (see docs/scaling.md).\n\n" + text + "\n")


if __name__ == "__main__":
    main()
