"""What sharing costs the authorization rule: the owner's build_context, add_message and
list_conversations on a 10,000-message history, first with no memberships anywhere, then with the
conversation shared with 50 users and 200 other users' conversations shared with the owner; and
a member's build_context of the same conversation. Server time (EXPLAIN ANALYZE), medians of one
run, so the ratios hold."""
import re
import uuid


def _server_ms(conn, sql, args, reps):
    times = []
    for _ in range(reps):
        plan = conn.execute("EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) " + sql, args).fetchall()
        times.append(float(re.search(r"Execution Time: ([\d.]+)", plan[-1][0]).group(1)))
    times.sort()
    return times[len(times) // 2]


def _measure(conn, cid, writes, reps):
    return {
        "build_context(…, 8000)": _server_ms(conn, "SELECT memory.build_context(%s, 8000)", (cid,), reps),
        "add_message": _server_ms(conn, "SELECT memory.add_message(%s, 'user', 'one more question about the plan')", (writes,), reps),
        "list_conversations()": _server_ms(conn, "SELECT * FROM memory.list_conversations()", (), reps),
    }


def run(conn, convs, size, user_id, smoke, agent):
    cid = convs[f"n{size}"]["cid"]
    reps = 5 if smoke else 41
    writes = conn.execute("SELECT (memory.create_conversation(%s, 'sharing writes')).id", (agent,)).fetchone()[0]
    _measure(conn, cid, writes, 3)
    before = _measure(conn, cid, writes, reps)
    members = [str(uuid.uuid4()) for _ in range(5 if smoke else 50)]
    for m in members:
        conn.execute("SELECT memory.share_conversation(%s, %s, 'editor')", (cid, m))
    for _ in range(20 if smoke else 200):
        other = str(uuid.uuid4())
        conn.execute("SELECT set_config('memory.user_id', %s, false)", (other,))
        theirs = conn.execute("SELECT (memory.create_conversation(%s, 'theirs')).id", (agent,)).fetchone()[0]
        conn.execute("SELECT memory.add_message(%s, 'user', 'hello')", (theirs,))
        conn.execute("SELECT memory.share_conversation(%s, %s, 'viewer')", (theirs, user_id))
    conn.execute("SELECT set_config('memory.user_id', %s, false)", (user_id,))
    conn.execute("ANALYZE memory.conversation_members")
    _measure(conn, cid, writes, 3)
    after = _measure(conn, cid, writes, reps)
    conn.execute("SELECT set_config('memory.user_id', %s, false)", (members[0],))
    member = _server_ms(conn, "SELECT memory.build_context(%s, 8000)", (cid,), reps)
    conn.execute("SELECT set_config('memory.user_id', %s, false)", (user_id,))
    rows = [{"operation": k, "before_ms": before[k], "after_ms": after[k], "ratio": after[k] / before[k]} for k in before]
    rows.append({"operation": "a member's build_context(…, 8000) of the same conversation", "before_ms": before["build_context(…, 8000)"],
                 "after_ms": member, "ratio": member / before["build_context(…, 8000)"]})
    for r in rows:
        print(f"  {r['operation']:<60} unshared {r['before_ms']:7.3f} ms  shared {r['after_ms']:7.3f} ms  x{r['ratio']:.2f}", flush=True)
    return rows


def report_lines(rows):
    lines = ["", "## The authorization rule with sharing (server time, median ms)", "",
             "Before: nothing shared. After: the conversation shared with 50 editors, and 200 other users' "
             "conversations shared with its owner. The last row compares a member with the owner.", "",
             "| operation (as the owner) | nothing shared | with sharing | × |", "|---|---:|---:|---:|"]
    lines += [f"| {r['operation']} | {r['before_ms']:.3f} | {r['after_ms']:.3f} | {r['ratio']:.2f} |" for r in rows]
    return lines
