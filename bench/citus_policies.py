"""What each shape of the row-level security rule costs, on one node and on a three-node Citus
cluster (bench/citus.sh starts both and writes bench/results/citus-policies.md).

Citus refuses policies with subqueries on distributed tables, and memory_ext's rule today is
one (a message is readable when its conversation is). The candidate shapes, on a toy schema
that has the same rule (owner or member of the conversation) and nothing else:

  none              RLS off: the floor
  subquery          memory_ext's shape on one node: EXISTS over the conversation, whose owner is
                    the caller or whose id is among those shared with the caller (computed
                    once per query); Citus refuses it
  owner_on_row      the owner's id copied onto every message (members cannot read: a reference)
  readers_on_row    the ids of everyone who may read, copied onto every message
  function          an opaque function of conversation_id that reads the co-located
                    conversation and members rows (on Citus: nested execution, allowed
                    because those rows are on the same node as the message)
  owner_or_function owner_on_row, then the function for everyone else

Each is timed for a context-window read (the newest messages of one conversation) by its
owner and by a member, and for a search-like scan of all messages by one user.
"""
import argparse
import random
import statistics
import time
import uuid

import psycopg

USERS = 100
CONVERSATIONS_PER_USER = 10
MESSAGES = 20  # per conversation
WINDOW = f"SELECT seq, content FROM p.messages WHERE conversation_id = %s ORDER BY seq DESC LIMIT {MESSAGES}"
SCAN = "SELECT count(*) FROM p.messages WHERE content LIKE '%%needle%%'"

FORMS = {
    "none": None,
    "subquery": """EXISTS (SELECT 1 FROM p.conversations c WHERE c.id = conversation_id
                      AND (c.user_id = (SELECT p.uid()) OR c.id = ANY (CAST((SELECT p.shared_with((SELECT p.uid()))) AS uuid[]))))""",
    "owner_on_row": "user_id = p.uid()",
    "readers_on_row": "p.uid() = ANY (readers)",
    "function": "p.may_read(conversation_id)",
    "owner_or_function": "user_id = p.uid() OR p.may_read(conversation_id)",
}

SCHEMA = """
CREATE SCHEMA p;
CREATE FUNCTION p.uid() RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('p.uid', true), '')::uuid $$;
CREATE TABLE p.conversations (id uuid PRIMARY KEY, user_id uuid NOT NULL);
CREATE TABLE p.members (conversation_id uuid NOT NULL, user_id uuid NOT NULL, PRIMARY KEY (conversation_id, user_id));
CREATE TABLE p.messages (conversation_id uuid NOT NULL, seq int NOT NULL, user_id uuid NOT NULL,
                         readers uuid[] NOT NULL, content text NOT NULL, PRIMARY KEY (conversation_id, seq));
CREATE FUNCTION p.shared_with(u uuid) RETURNS uuid[] LANGUAGE sql STABLE
    AS $$ SELECT coalesce(array_agg(conversation_id), '{}') FROM p.members WHERE user_id = u $$;
"""

# the function form: on Citus, reading the conversation's own (co-located, so local) rows from
# inside a query on a shard needs nested execution
FUNCTION = """
CREATE FUNCTION p.may_read(c uuid) RETURNS boolean LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog {citus_setting}
AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM p.conversations WHERE id = c AND user_id = p.uid())
        OR EXISTS (SELECT 1 FROM p.members WHERE conversation_id = c AND user_id = p.uid());
END $$;
"""


def build(conn, citus):
    conn.execute("DROP SCHEMA IF EXISTS p CASCADE")
    conn.execute(SCHEMA)
    if citus:
        conn.execute("SELECT create_distributed_table('p.conversations', 'id')")
        for t in ("members", "messages"):
            conn.execute(f"SELECT create_distributed_table('p.{t}', 'conversation_id', colocate_with => 'p.conversations')")
    conn.execute(FUNCTION.format(citus_setting="SET citus.allow_nested_distributed_execution = on" if citus else ""))
    rng = random.Random(7)
    users = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(USERS)]
    convs, members, messages = [], [], []
    for u in users:
        for _ in range(CONVERSATIONS_PER_USER):
            cid = uuid.UUID(int=rng.getrandbits(128))
            other = rng.choice([x for x in users if x != u])
            convs.append((cid, u))
            members.append((cid, other))
            for s in range(1, MESSAGES + 1):
                word = "needle" if s % 10 == 0 else "hay"
                messages.append((cid, s, u, [u, other], f"{word} message {s} of a conversation"))
    with conn.cursor() as cur:
        with cur.copy("COPY p.conversations FROM STDIN") as cp:
            for r in convs:
                cp.write_row(r)
        with cur.copy("COPY p.members FROM STDIN") as cp:
            for r in members:
                cp.write_row(r)
        with cur.copy("COPY p.messages FROM STDIN") as cp:
            for r in messages:
                cp.write_row(r)
    conn.execute("ANALYZE p.conversations, p.members, p.messages")
    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'reader'").fetchone():
        conn.execute("CREATE ROLE reader LOGIN")  # Citus opens its connections to the workers as the current role
    conn.execute("GRANT USAGE ON SCHEMA p TO reader")
    conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA p TO reader")
    return convs, members


def set_form(conn, form):
    conn.execute("DROP POLICY IF EXISTS read ON p.messages")
    rule = FORMS[form]
    if rule is None:
        conn.execute("ALTER TABLE p.messages DISABLE ROW LEVEL SECURITY")
        return
    conn.execute("ALTER TABLE p.messages ENABLE ROW LEVEL SECURITY")
    conn.execute(f"CREATE POLICY read ON p.messages FOR SELECT USING ({rule})")


def timed(conn, who_and_what, reps):
    """Median µs per query over rounds of (user, query, args) run as that user in one transaction."""
    rounds = []
    for rep in range(reps + 1):  # the first round warms caches and plans, and is not counted
        start = time.perf_counter()
        n = 0
        for user, sql, args, expect in who_and_what:
            with conn.transaction():
                conn.execute("SET LOCAL ROLE reader")
                conn.execute(f"SET LOCAL p.uid = '{user}'")
                rows = conn.execute(sql, args, prepare=True).fetchall()
                if expect is not None and len(rows) != expect and rows != [(expect,)]:
                    raise AssertionError(f"{sql} as {user}: {rows[:3]}… expected {expect}")
                n += 1
        if rep:
            rounds.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(rounds)


def measure(dsn, citus, reps):
    with psycopg.connect(dsn, autocommit=True) as conn:
        if citus:
            # an identity reaches the workers only as a SET LOCAL, and only with this setting
            conn.execute("SET citus.propagate_set_commands = 'local'")
        convs, members = build(conn, citus)
        rng = random.Random(11)
        picks = rng.sample(range(len(convs)), 40)
        as_owner = [(convs[i][1], WINDOW, (convs[i][0],), MESSAGES) for i in picks]
        as_member = [(members[i][1], WINDOW, (convs[i][0],), MESSAGES) for i in picks]
        # a user reads their own 10 conversations and 10 shared ones: 20 × 2 needles
        scan = [(convs[i][1], SCAN, (), None) for i in picks[:4]]
        results = {}
        for form in FORMS:
            try:
                set_form(conn, form)
            except psycopg.Error as e:
                results[form] = f"refused: {e.diag.message_primary}"
                continue
            member_rows = None if form == "owner_on_row" else MESSAGES
            results[form] = {
                "owner": timed(conn, as_owner, reps),
                "member": timed(conn, [(u, q, a, member_rows) for u, q, a, _ in as_member], reps)
                if form != "owner_on_row" else None,
                "scan": timed(conn, scan, max(1, reps // 2)),
            }
        return results


def table(single, cluster):
    base = single["none"]
    lines = ["| rule | one node: owner window | member window | user's scan | three nodes: owner window | member window | user's scan |",
             "|---|---|---|---|---|---|---|"]

    def cells(r, floor):
        if isinstance(r, str):
            return [r, "", ""]
        out = []
        for k in ("owner", "member", "scan"):
            v = r[k]
            out.append("—" if v is None else f"{v:,.0f} µs ({v / floor[k]:.1f}×)")
        return out

    for form in FORMS:
        lines.append("| " + " | ".join([form] + cells(single[form], base) + cells(cluster[form], cluster["none"])) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--single", required=True, help="DSN of a plain node")
    ap.add_argument("--coordinator", required=True, help="DSN of the Citus coordinator")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out")
    a = ap.parse_args()
    single = measure(a.single, False, a.reps)
    cluster = measure(a.coordinator, True, a.reps)
    text = table(single, cluster)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write("# Row-level security shapes on one node and on Citus (bench/citus.sh)\n\n"
                    f"{USERS * CONVERSATIONS_PER_USER * MESSAGES:,} messages; µs per query, median of {a.reps} rounds; "
                    "ratios against `none` on the same layout.\n\n" + text + "\n")


if __name__ == "__main__":
    main()
