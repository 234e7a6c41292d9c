"""Export, import and fork on the benchmark's stored histories: fork time of a whole
conversation, export time, and import of the exported messages and a bulk INSERT ... SELECT
through the triggers next to the floor, a plain INSERT ... SELECT of the same rows into an
indexed table without triggers or RLS."""
import json
import time


def _ms(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return times[len(times) // 2]


def run(conn, convs, size, smoke):
    cid = convs[f"n{size}"]["cid"]
    reps = 1 if smoke else 5
    conn.execute("DROP TABLE IF EXISTS plain_import")
    conn.execute("""CREATE TABLE plain_import (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), conversation_id uuid NOT NULL,
                    seq bigint NOT NULL, role text NOT NULL, content text NOT NULL, tool_calls jsonb, tool_call_id text,
                    token_count integer NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now(),
                    UNIQUE (conversation_id, seq))""")
    doc = conn.execute("SELECT memory.export_conversation(%s)", (cid,)).fetchone()[0]
    text = json.dumps(doc)
    rows = {}
    rows["fork (whole conversation)"] = _ms(lambda: conn.execute("SELECT memory.fork_conversation(%s)", (cid,)), reps)
    rows["export json"] = _ms(lambda: conn.execute("SELECT memory.export_conversation(%s)", (cid,)).fetchone(), reps)
    rows["export markdown"] = _ms(lambda: conn.execute("SELECT memory.export_conversation(%s, 'markdown')", (cid,)).fetchone(), reps)
    rows["import json (one bulk statement)"] = _ms(
        lambda: conn.execute("SELECT memory.import_conversation(%s)", (text,)), max(1, reps // 2))

    def bulk_insert():
        new = conn.execute("SELECT (memory.create_conversation(gen_random_uuid(), 'bulk')).id").fetchone()[0]
        t = time.perf_counter()
        conn.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content, name, tool_calls, tool_call_id)
                        SELECT %s, m->>'role', m->>'content', m->>'name', m->'tool_calls', m->>'tool_call_id'
                          FROM jsonb_array_elements(%s::jsonb->'messages') m""", (new, text))
        return (time.perf_counter() - t) * 1000
    times = sorted(bulk_insert() for _ in range(max(1, reps // 2)))
    rows["bulk INSERT ... SELECT through the triggers (as the user, RLS)"] = times[len(times) // 2]
    rows["floor: plain INSERT ... SELECT of the same rows (indexed, no triggers)"] = _ms(lambda: conn.execute(
        """INSERT INTO plain_import (conversation_id, seq, role, content, tool_calls, tool_call_id)
           SELECT gen_random_uuid(), (m->>'seq')::bigint, m->>'role', m->>'content', m->'tool_calls', m->>'tool_call_id'
             FROM jsonb_array_elements(%s::jsonb->'messages') m""", (text,)), reps)
    # the floor again, with the full-text index memory_ext keeps (words in a tsvector column, GIN)
    conn.execute("TRUNCATE plain_import")
    conn.execute("ALTER TABLE plain_import ADD COLUMN words tsvector")
    conn.execute("CREATE INDEX ON plain_import USING gin (words)")
    rows["floor with a full-text index: the same INSERT ... SELECT plus to_tsvector and a GIN index"] = _ms(lambda: conn.execute(
        """INSERT INTO plain_import (conversation_id, seq, role, content, tool_calls, tool_call_id, words)
           SELECT gen_random_uuid(), (m->>'seq')::bigint, m->>'role', m->>'content', m->'tool_calls', m->>'tool_call_id',
                  to_tsvector('simple', m->>'content')
             FROM jsonb_array_elements(%s::jsonb->'messages') m""", (text,)), reps)
    out = [{"messages": size, "operation": k, "median_ms": v} for k, v in rows.items()]
    floor = rows["floor: plain INSERT ... SELECT of the same rows (indexed, no triggers)"]
    for r in out:
        r["x_floor"] = r["median_ms"] / floor
        print(f"  {size:>6} msgs: {r['operation']:<72} median {r['median_ms']:9.1f} ms  x{r['x_floor']:6.1f} of the floor", flush=True)
    conn.execute("DROP TABLE plain_import")
    return out


def report_lines(rows):
    lines = ["", "## Export, import and fork (median ms; × floor = a plain INSERT ... SELECT of the same rows)", "",
             "| messages | operation | median ms | × floor |", "|---:|---|---:|---:|"]
    lines += [f"| {r['messages']} | {r['operation']} | {r['median_ms']:.1f} | {r['x_floor']:.1f} |" for r in rows]
    return lines
