"""memory_ext against the peers, side by side in one run on one machine. Run by bench/run.sh.

Every number is a time observed by the client unless it says "server". Ratios are the peer's
median over memory_ext's median, measured in the same run."""
import argparse
import datetime
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg
from psycopg.types.json import Jsonb

import support.tiktoken_offline  # noqa: F401  (tiktoken's vocabularies without network; tests/ is on PYTHONPATH)

# isort: split
import tiktoken
from benchdb import setup_writes_db

from support.pg import BIN

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENC = tiktoken.get_encoding("cl100k_base")
USER_ID = "b0000000-0000-0000-0000-0000000000be"
AGENT = "a0000000-0000-0000-0000-0000000000a6"

WORDS = ("the of and to in is that for it as with was on be by this are from at or an which have not but "
         "memory context window token budget agent conversation summary postgres index query latency user "
         "assistant tool call result weather paris train booking invoice customer order refund shipping").split()
CODE = ['def fetch(conn, cid):\n    rows = conn.execute("SELECT * FROM t WHERE id = %s", (cid,)).fetchall()\n    return [dict(r) for r in rows]\n',
        'fn main() {\n    let v: Vec<u64> = (1..=10).map(|x| x * x).collect();\n    println!("{:?}", v.iter().sum::<u64>());\n}\n',
        'SELECT c.id, count(m.*) AS n\n  FROM conversations c JOIN messages m ON m.conversation_id = c.id\n GROUP BY c.id ORDER BY n DESC LIMIT 10;\n']


def prose(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_conversation(rng, n):
    """Realistic mixed history: prose, code, and OpenAI tool calls with their results."""
    msgs, k = [], 0
    while len(msgs) < n:
        r = rng.random()
        if r < 0.42:
            msgs.append({"role": "user", "content": prose(rng, rng.randint(8, 60))})
        elif r < 0.78:
            body = prose(rng, rng.randint(30, 160))
            if rng.random() < 0.3:
                body += "\n```\n" + rng.choice(CODE) + "```"
            msgs.append({"role": "assistant", "content": body})
        elif len(msgs) + 2 <= n:
            k += 1
            cid = f"call_{k:06d}"
            args = json.dumps({"city": rng.choice(["Paris", "Lyon", "Nice"]), "days": rng.randint(1, 7)})
            msgs.append({"role": "assistant", "content": "", "tool_calls": [
                {"id": cid, "type": "function", "function": {"name": "get_forecast", "arguments": args}}]})
            msgs.append({"role": "tool", "tool_call_id": cid,
                         "content": json.dumps({"forecast": [{"day": d, "high_c": rng.randint(10, 30), "sky": rng.choice(["sunny",
                                                                                                                          "rain"])} for d in range(3)]})})
        else:
            msgs.append({"role": "user", "content": prose(rng, 10)})
    return msgs


def canonical(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cookbook_tokens(m):
    """The OpenAI cookbook's framing (what memory_ext counts): 3 + string fields (+1 for name),
    tool_calls as compact sorted JSON."""
    n = 3
    for key, value in m.items():
        if key == "tool_calls":
            n += len(ENC.encode_ordinary(canonical(value)))
        elif isinstance(value, str):
            n += len(ENC.encode_ordinary(value))
            if key == "name":
                n += 1
    return n


def payload_tokens(msgs):
    return 3 + sum(cookbook_tokens(m) for m in msgs)


def valid_payload(msgs):
    """No tool message without its call right before it, no call without its results."""
    i = 0
    while i < len(msgs):
        m = msgs[i]
        if m["role"] == "tool":
            return False
        if m.get("tool_calls"):
            ids = {c["id"] for c in m["tool_calls"]}
            i += 1
            while i < len(msgs) and msgs[i]["role"] == "tool":
                ids.discard(msgs[i].get("tool_call_id"))
                i += 1
            if ids:
                return False
            continue
        i += 1
    return True


def timed(fn, reps):
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return {"min_ms": min(times), "median_ms": statistics.median(times), "reps": reps}, out


# ---- the methods ---------------------------------------------------------------------------

def memory_ext(conn, cid, budget):
    return conn.execute("SELECT memory.build_context(%s, %s)", (cid, budget), prepare=True).fetchone()[0]["messages"]


def fetch_all(conn, cid):
    return conn.execute("SELECT role, content, tool_calls, tool_call_id FROM memory.conversation_messages "
                        "WHERE conversation_id = %s ORDER BY seq", (cid,), prepare=True).fetchall()


def as_openai(row):
    role, content, calls, call_id = row
    m = {"role": role, "content": content}
    if calls:
        m["tool_calls"] = calls
    if call_id:
        m["tool_call_id"] = call_id
    return m


def guide_chars4(conn, cid, budget):
    """The original guide: fetch every message, estimate len/4, keep the newest that fit."""
    rows = fetch_all(conn, cid)
    out, total = [], 0
    for row in reversed(rows):
        t = len(row[1]) // 4
        if total + t > budget:
            break
        total += t
        out.append(as_openai(row))
    return out[::-1]


def tiktoken_loop(conn, cid, budget):
    """Hand-written: fetch every message, exact tiktoken count per message, newest first."""
    rows = fetch_all(conn, cid)
    out, total = [], 3
    for row in reversed(rows):
        m = as_openai(row)
        t = cookbook_tokens(m)
        if total + t > budget:
            break
        total += t
        out.append(m)
    return out[::-1]


def langchain(conn, session, budget):
    from langchain_core.messages import convert_to_openai_messages
    return convert_to_openai_messages(langchain_lc(conn, session, budget))


def langchain_lc(conn, session, budget):
    """The same, returning LangChain messages (what an application passes to its model)."""
    from langchain_core.messages import convert_to_openai_messages, trim_messages
    from langchain_postgres import PostgresChatMessageHistory

    def counter(messages):
        return payload_tokens(convert_to_openai_messages(messages))

    history = PostgresChatMessageHistory("lc_messages", session, sync_connection=conn)
    return trim_messages(history.get_messages(), max_tokens=budget, strategy="last", token_counter=counter)


# ---- setup ---------------------------------------------------------------------------------

def connect(port, db="bench", user="bench"):
    conn = psycopg.connect(f"host=127.0.0.1 port={port} dbname={db} user={user}", autocommit=True)
    conn.execute("SELECT set_config('memory.user_id', %s, false)", (USER_ID,))
    return conn


def setup_db(port, sizes, others):
    with psycopg.connect(f"host=127.0.0.1 port={port} dbname=postgres user=postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS bench")
        c.execute("CREATE DATABASE bench")
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = 'bench'").fetchone():
            c.execute("CREATE ROLE bench LOGIN")
    with psycopg.connect(f"host=127.0.0.1 port={port} dbname=bench user=postgres", autocommit=True) as c:
        c.execute("CREATE EXTENSION memory_ext CASCADE")
        c.execute("GRANT CREATE ON SCHEMA public TO bench")
        # the benchmark's login acts as an application server asserting memory.user_id
        c.execute("ALTER DATABASE bench SET memory.user_id_roles = 'bench'")
    rng = random.Random(2024)
    conn = connect(port)
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage, message_to_dict, messages_from_dict  # noqa: F401
    from langchain_postgres import PostgresChatMessageHistory
    PostgresChatMessageHistory.create_tables(conn, "lc_messages")
    convs = {}
    plan = [(f"other{i}", others) for i in range(10)] + [(f"n{n}", n) for n in sizes]
    for name, n in plan:
        msgs = make_conversation(rng, n)
        cid = conn.execute("SELECT (memory.create_conversation(%s, %s)).id", (AGENT, name)).fetchone()[0]
        session = str(uuid.uuid4())
        t = time.perf_counter()
        for i in range(0, n, 2000):
            chunk = msgs[i:i + 2000]
            conn.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content, tool_calls, tool_call_id, seq, token_count)
                            SELECT %s, r.role, r.content, r.tool_calls, r.tool_call_id, 0, 0
                              FROM jsonb_to_recordset(%s) AS r(role text, content text, tool_calls jsonb, tool_call_id text)""",
                         (cid, Jsonb(chunk)))
        insert_rate = n / (time.perf_counter() - t)
        lc = []
        for m in msgs:
            if m["role"] == "user":
                lc.append(HumanMessage(m["content"]))
            elif m["role"] == "tool":
                lc.append(ToolMessage(m["content"], tool_call_id=m["tool_call_id"]))
            elif m.get("tool_calls"):
                lc.append(AIMessage("", tool_calls=[{"id": c["id"], "name": c["function"]["name"],
                                                     "args": json.loads(c["function"]["arguments"])} for c in m["tool_calls"]]))
            else:
                lc.append(AIMessage(m["content"]))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO lc_messages (session_id, message) VALUES (%s, %s)",
                            [(session, json.dumps(message_to_dict(x))) for x in lc])
        convs[name] = {"cid": cid, "session": session, "n": n, "insert_rate": insert_rate}
        print(f"  stored {name}: {n} messages ({insert_rate:.0f}/s through the triggers)", flush=True)
    conn.execute("ANALYZE")
    return conn, convs


# ---- benchmarks ----------------------------------------------------------------------------

def bench_context(conn, convs, sizes, budgets, smoke):
    rows = []
    for n in sizes:
        c = convs[f"n{n}"]
        for budget in budgets:
            reps = 1 if smoke else 15
            lc_reps = 1 if smoke else (3 if n <= 10_000 else 2)
            memory_ext(conn, c["cid"], budget)  # warm
            mx, mx_out = timed(lambda: memory_ext(conn, c["cid"], budget), reps)
            servers = []
            for _ in range(1 if smoke else 9):
                p = conn.execute("EXPLAIN (ANALYZE) SELECT memory.build_context(%s, %s)", (c["cid"], budget)).fetchall()
                servers += [float(re.search(r"([\d.]+) ms", r[0]).group(1)) for r in p if r[0].startswith("Execution Time")]
            # the floor: the bare backward index scan returning the same stored rows as JSON, one
            # query, same role and RLS
            included = int(conn.execute("SELECT memory.build_context(%s, %s)->>'included_messages'", (c["cid"], budget)).fetchone()[0])
            floors = []
            for _ in range(1 if smoke else 9):
                p = conn.execute("EXPLAIN (ANALYZE) SELECT jsonb_agg(jsonb_build_object('role', role, 'content', content, 'tool_calls', tool_calls, "
                                 "'tool_call_id', tool_call_id) ORDER BY seq) FROM (SELECT seq, role, content, tool_calls, tool_call_id "
                                 "FROM memory.conversation_messages WHERE conversation_id = %s ORDER BY seq DESC LIMIT %s) t",
                                 (c["cid"], included)).fetchall()
                floors += [float(re.search(r"([\d.]+) ms", r[0]).group(1)) for r in p if r[0].startswith("Execution Time")]
            results = {"memory_ext": (mx, mx_out)}
            results["guide chars/4 loop"] = timed(lambda: guide_chars4(conn, c["cid"], budget), max(1, reps // 3))
            results["psycopg + tiktoken loop"] = timed(lambda: tiktoken_loop(conn, c["cid"], budget), max(1, reps // 3))
            results["langchain-postgres + trim_messages"] = timed(lambda: langchain(conn, c["session"], budget), lc_reps)
            for method, (t, out) in results.items():
                toks = payload_tokens(out)
                rows.append({"messages_in_history": n, "budget": budget, "method": method, **t,
                             "ratio_vs_memory_ext": t["median_ms"] / mx["median_ms"],
                             "returned_messages": len(out), "tokens": toks, "fits": toks <= budget,
                             "valid_payload": valid_payload(out),
                             "server_median_ms": statistics.median(servers) if method == "memory_ext" else None,
                             "floor_server_median_ms": statistics.median(floors) if method == "memory_ext" else None})
                print(f"  {n:>6} msgs, budget {budget:>5}: {method:<36} median {t['median_ms']:9.2f} ms "
                      f"x{t['median_ms'] / mx['median_ms']:8.1f}  {len(out):>4} msgs {toks:>6} tokens fits={toks <= budget} valid={valid_payload(out)}",
                          flush=True)
            print(f"  {n:>6} msgs, budget {budget:>5}: memory_ext server time median {statistics.median(servers):.3f} ms, "
                  f"floor (index scan of the same {included} rows as JSON) {statistics.median(floors):.3f} ms", flush=True)
    return rows


def explain_plans(conn, convs, sizes):
    """EXPLAIN (ANALYZE, BUFFERS) of build_context at each size, and of the keyset page it reads."""
    out = {}
    for n in sizes:
        cid = convs[f"n{n}"]["cid"]
        outer = [r[0] for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS) SELECT memory.build_context(%s, 8000)", (cid,))]
        out[n] = {"build_context": outer}
    big = convs[f"n{sizes[-1]}"]["cid"]
    with conn.transaction():
        # the page query as build_context runs it (same planner settings, same role and RLS)
        conn.execute("SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off")
        inner = [r[0] for r in conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT seq, token_count, role, content, name, tool_calls::text, tool_call_id "
            "FROM memory.conversation_messages WHERE conversation_id = %s AND seq < 9223372036854775807 ORDER BY seq DESC LIMIT 60", (big,))]
    out["page_query"] = inner
    return out


def bench_counting(port, out_dir, smoke):
    rng = random.Random(7)
    n_rows = 300 if smoke else 8000
    texts = []
    for i in range(n_rows):
        parts = [prose(rng, rng.randint(80, 300))]
        if i % 3 == 0:
            parts.append(rng.choice(CODE) * rng.randint(1, 4))
        texts.append("\n\n".join(parts))
    total_bytes = sum(len(t.encode()) for t in texts)
    res = {"rows": n_rows, "megabytes": total_bytes / 1e6}
    with psycopg.connect(f"host=127.0.0.1 port={port} dbname=bench user=postgres", autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS bench_text")
        c.execute("CREATE TABLE bench_text (content text)")
        with c.cursor().copy("COPY bench_text (content) FROM STDIN") as cp:
            for t in texts:
                cp.write_row((t,))
        c.execute("SELECT count(*) FROM bench_text")
        for enc in ("cl100k_base", "o200k_base"):
            c.execute("SELECT sum(memory.estimate_tokens(content, %s)) FROM bench_text", (enc,))  # warm
            t, total = timed(lambda: c.execute("SELECT sum(memory.estimate_tokens(content, %s)) FROM bench_text", (enc,)).fetchone()[0], 1 if smoke else 3)
            py = tiktoken.get_encoding(enc)
            tp, ptotal = timed(lambda: sum(len(py.encode_ordinary(x)) for x in texts), 1 if smoke else 3)
            res[enc] = {"memory_ext_mb_s": total_bytes / 1e6 / (t["min_ms"] / 1000), "tiktoken_mb_s": total_bytes / 1e6 / (tp["min_ms"] / 1000),
                        "tokens": int(total), "tiktoken_tokens": ptotal, "identical": int(total) == ptotal}
    path = os.path.join(out_dir, "corpus.txt")
    with open(path, "w") as f:
        f.write("\x1e".join(texts))
    raw = subprocess.run([os.path.join(ROOT, "target/release/examples/count_bench"), path], capture_output=True, text=True, check=True).stdout
    for line in raw.splitlines():
        name, tokens, mbs = line.split()
        if name.startswith("tiktoken-rs:"):
            res[name.split(":")[1]]["tiktoken_rs_mb_s"] = float(mbs)
        else:
            res[name]["raw_rust_mb_s"] = float(mbs)
    os.remove(path)
    for enc in ("cl100k_base", "o200k_base"):
        r = res[enc]
        print(f"  {enc}: memory_ext {r['memory_ext_mb_s']:.1f} MB/s in SQL, raw Rust {r['raw_rust_mb_s']:.1f} MB/s, tiktoken-rs {r['tiktoken_rs_mb_s']:.1f} MB/s, "
              f"Python tiktoken {r['tiktoken_mb_s']:.1f} MB/s; identical counts: {r['identical']}", flush=True)
    return res


def bench_cold_start(port, plain_port, smoke):
    res = {}
    for label, p in (("preloaded", port), ("not preloaded", plain_port)):
        with psycopg.connect(f"host=127.0.0.1 port={p} dbname=postgres user=postgres", autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS memory_ext CASCADE")
        conn_ms, first_ms, o200k_ms, unrelated_ms = [], [], [], []
        for _ in range(3 if smoke else 20):
            t = time.perf_counter()
            c = psycopg.connect(f"host=127.0.0.1 port={p} dbname=postgres user=postgres", autocommit=True)
            conn_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            c.execute("SELECT count(*) FROM pg_class WHERE relkind = 'r'").fetchone()
            unrelated_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            c.execute("SELECT memory.estimate_tokens('hello world')").fetchone()
            first_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            c.execute("SELECT memory.estimate_tokens('hello world', 'o200k_base')").fetchone()
            o200k_ms.append((time.perf_counter() - t) * 1000)
            c.close()
        res[label] = {"connect_ms": statistics.median(conn_ms), "unrelated_query_ms": statistics.median(unrelated_ms),
                      "first_cl100k_call_ms": statistics.median(first_ms), "first_o200k_call_ms": statistics.median(o200k_ms)}
        print(f"  {label}: connect {res[label]['connect_ms']:.2f} ms, unrelated query {res[label]['unrelated_query_ms']:.2f} ms, "
              f"first estimate_tokens {res[label]['first_cl100k_call_ms']:.2f} ms (cl100k), {res[label]['first_o200k_call_ms']:.2f} ms (o200k)", flush=True)
    return res


def bench_writes(port, smoke):
    pgbench = f"{BIN}/pgbench"
    with psycopg.connect(f"host=127.0.0.1 port={port} dbname=bench user=postgres", autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS bench_convs (n int PRIMARY KEY, id uuid)")
        c.execute("GRANT SELECT, INSERT, UPDATE ON bench_convs TO bench")
        # the floor: a plain table of the same rows with the same unique key, no triggers, no RLS
        c.execute("""CREATE TABLE IF NOT EXISTS bench_plain (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), conversation_id uuid NOT NULL,
                     seq bigint NOT NULL, role text NOT NULL, content text NOT NULL, token_count int, created_at timestamptz DEFAULT now(),
                     UNIQUE (conversation_id, seq))""")
        c.execute("CREATE SEQUENCE IF NOT EXISTS bench_plain_seq")
        c.execute("GRANT SELECT, INSERT ON bench_plain TO bench")
        c.execute("GRANT USAGE ON SEQUENCE bench_plain_seq TO bench")
    conn = connect(port)
    for i in range(1, 5):
        cid = conn.execute("SELECT (memory.create_conversation(%s, 'writes')).id", (AGENT,)).fetchone()[0]
        conn.execute("INSERT INTO bench_convs VALUES (%s, %s) ON CONFLICT (n) DO UPDATE SET id = excluded.id", (i - 1, cid))
    conn.close()
    scripts = {
        "add_message": "SELECT memory.add_message((SELECT id FROM bench_convs WHERE n = :client_id), 'user', 'What is the weather in Paris this weekend? I would like to plan a walk along the river.');\n",
        # the same appends without the full-text words (memory.search_config = off, set for the
        # benchmark's role below): what the search index costs an append, in the same run
        "add_message (search off)": "SELECT memory.add_message((SELECT id FROM bench_convs WHERE n = :client_id), 'user', 'What is the weather in Paris this weekend? I would like to plan a walk along the river.');\n",
        "INSERT": "INSERT INTO memory.conversation_messages (conversation_id, role, content, seq, token_count) SELECT id, 'assistant', 'Saturday looks sunny in Paris, from 14 to 23 degrees: a good day for a walk along the Seine.', 0, 0 FROM bench_convs WHERE n = :client_id;\n",
        "plain table": "INSERT INTO bench_plain (conversation_id, seq, role, content) SELECT id, nextval('bench_plain_seq'), 'user', 'What is the weather in Paris this weekend? I would like to plan a walk along the river.' FROM bench_convs WHERE n = :client_id;\n",
    }
    res = {}
    env = dict(os.environ, PGOPTIONS=f"-c memory.user_id={USER_ID} -c memory.summarize_threshold=2000000000")
    for name, sql in scripts.items():
        with psycopg.connect(f"host=127.0.0.1 port={port} dbname=bench user=postgres", autocommit=True) as c:
            c.execute(f"ALTER ROLE bench IN DATABASE bench {'SET memory.search_config = off' if 'search off' in name else 'RESET memory.search_config'}")
        path = f"/tmp/memory_ext_bench_{name.split()[0]}.sql"
        with open(path, "w") as f:
            f.write(sql)
        for clients in (1, 4):
            out = subprocess.run([pgbench, "-n", "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "-f", path, "-c", str(clients),
                                  "-j", str(clients), "-T", "2" if smoke else "15", "bench"], capture_output=True, text=True, env=env, check=True).stdout
            tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
            res[f"{name}, {clients} client{'s' if clients > 1 else ''}"] = tps
            print(f"  {name:<24} {clients} client(s): {tps:8.0f} messages/s", flush=True)
    # latency under concurrent load: 8 clients on 4 conversations, every transaction logged
    logdir = tempfile.mkdtemp(prefix="memory_ext_bench_")
    with open("/tmp/memory_ext_bench_concurrent.sql", "w") as f:
        f.write(scripts["add_message"].replace(":client_id", "(:client_id % 4)"))
    subprocess.run([pgbench, "-n", "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "-f", "/tmp/memory_ext_bench_concurrent.sql",
                    "-c", "8", "-j", "2", "-T", "2" if smoke else "15", "-l", "--log-prefix", f"{logdir}/tx", "bench"],
                   capture_output=True, text=True, env=env, check=True, cwd=logdir)
    lat = sorted(int(line.split()[2]) / 1000 for fn in os.listdir(logdir) for line in open(os.path.join(logdir, fn)))
    res["add_message, 8 clients on 4 conversations: p50 ms"] = lat[len(lat) // 2]
    res["add_message, 8 clients on 4 conversations: p99 ms"] = lat[int(len(lat) * 0.99)]
    print(f"  add_message 8 clients on 4 conversations: p50 {lat[len(lat) // 2]:.2f} ms, p99 {lat[int(len(lat) * 0.99)]:.2f} ms "
          f"({len(lat)} appends)", flush=True)
    return res


# ---- report --------------------------------------------------------------------------------

def chart(rows, budgets, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(budgets), figsize=(6 * len(budgets), 4.5), squeeze=False)
    for ax, budget in zip(axes[0], budgets):
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r["messages_in_history"], r["median_ms"]) for r in rows if r["method"] == method and r["budget"] == budget)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("messages in the conversation")
        ax.set_ylabel("client-observed latency, median (ms)")
        ax.set_title(f"context window, budget {budget} tokens")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(out_dir, meta, ctx, counting, cold, writes, budgets, plans, turns, adapters, history, search, sharing):
    lines = ["# memory_ext benchmark results", "",
             f"{meta['date']} on {meta['machine']}. Command: `{meta['command']}`.", "",
             "## Context window (client-observed median; ratio = peer / memory_ext)", "",
             "| messages | budget | method | median ms | min ms | × memory_ext | returned | tokens | fits budget | valid payload |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---|---|"]
    for r in ctx:
        lines.append(f"| {r['messages_in_history']} | {r['budget']} | {r['method']} | {r['median_ms']:.2f} | {r['min_ms']:.2f} | "
                     f"{r['ratio_vs_memory_ext']:.1f} | {r['returned_messages']} | {r['tokens']} | {'yes' if r['fits'] else '**no**'} | "
                     f"{'yes' if r['valid_payload'] else '**no**'} |")
    lines += ["", "memory_ext server time (EXPLAIN ANALYZE execution time, median) next to the floor: the bare backward",
              "index scan that returns the same stored rows as JSON in one query, same role and RLS:", "",
              "| messages | budget | server ms | floor ms | × floor |", "|---:|---:|---:|---:|---:|"]
    for r in ctx:
        if r["method"] == "memory_ext":
            lines.append(f"| {r['messages_in_history']} | {r['budget']} | {r['server_median_ms']:.3f} | {r['floor_server_median_ms']:.3f} | "
                         f"{r['server_median_ms'] / r['floor_server_median_ms']:.1f} |")
    lines += ["", "![latency vs history size](context.png)", "", "<a id=\"plan\"></a>", "## Plan", "",
              "`EXPLAIN (ANALYZE, BUFFERS) SELECT memory.build_context(id, 8000)` — the buffers of the whole call stay flat as the history grows:", ""]
    for n, p in plans.items():
        if n == "page_query":
            continue
        lines += [f"{n} messages:", "", "```", *p["build_context"], "```", ""]
    lines += [f"The page query inside it on the {max(k for k in plans if k != 'page_query')}-message conversation (first page, as the `bench` role under RLS):", "",
              "```", *plans["page_query"], "```", "",
              f"## Exact token counting ({counting['megabytes']:.1f} MB of prose and code, one core)", "",
              "| encoding | memory_ext in SQL MB/s | raw Rust (bpe-openai) MB/s | tiktoken-rs MB/s | Python tiktoken MB/s | × Python tiktoken | identical counts |", "|---|---:|---:|---:|---:|---:|---|"]
    for enc in ("cl100k_base", "o200k_base"):
        r = counting[enc]
        lines.append(f"| {enc} | {r['memory_ext_mb_s']:.1f} | {r['raw_rust_mb_s']:.1f} | {r['tiktoken_rs_mb_s']:.1f} | {r['tiktoken_mb_s']:.1f} | {r['memory_ext_mb_s'] / r['tiktoken_mb_s']:.1f} | {r['identical']} |")
    lines += ["", "## New connections (median)", "",
              "| server | connect ms | unrelated query ms | first estimate_tokens (cl100k) ms | first o200k call ms |", "|---|---:|---:|---:|---:|"]
    for k, r in cold.items():
        lines.append(f"| {k} | {r['connect_ms']:.2f} | {r['unrelated_query_ms']:.2f} | {r['first_cl100k_call_ms']:.2f} | {r['first_o200k_call_ms']:.2f} |")
    lines += ["", "## Writes with all triggers (pgbench, one conversation per client)", "",
              "The floor is a plain table of the same rows with the same unique key and no triggers or RLS.", "",
              "| workload | messages/s | × plain table |", "|---|---:|---:|"]
    for k, v in writes.items():
        floor = writes.get("plain table, " + k.split(", ")[1]) if "ms" not in k else None
        lines.append(f"| {k} | {v:.0f} | {v / floor:.2f} |" if floor else f"| {k} | {v:.2f} | |")
    if turns:
        import turns as turns_bench
        lines += turns_bench.report_lines(turns)
    import adapters as adapters_bench
    lines += adapters_bench.report_lines(adapters)
    import history as history_bench
    lines += history_bench.report_lines(history)
    import search as search_bench
    lines += search_bench.report_lines(search)
    import sharing as sharing_bench
    lines += sharing_bench.report_lines(sharing)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "context": ctx, "counting": counting, "cold_start": cold, "writes": writes, "plans": plans,
                   "turns": turns, "adapters": adapters, "history": history, "search": search,
                   "sharing": sharing}, f, indent=1)
    chart(ctx, budgets, os.path.join(out_dir, "context.png"))


def rss_kb(pid):
    """Private (anonymous) resident memory: shared buffers a backend touches are not its own."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))


def soak(port, seconds):
    """Writers, readers and the worker together for a fixed time: latency percentiles per
    operation, and the resident memory of the backends and the worker before and after."""
    import threading
    setup_writes_db(port)
    with psycopg.connect(f"host=127.0.0.1 port={port} dbname=bench user=postgres", autocommit=True) as c:
        c.execute("ALTER DATABASE bench SET memory.min_summarize_threshold = 500")
    conns = {"writer": [connect(port) for _ in range(4)], "reader": [connect(port) for _ in range(2)]}
    for c in conns["writer"] + conns["reader"]:
        c.execute("SET memory.summarize_threshold = 500")
    cids = [conns["writer"][0].execute("SELECT (memory.create_conversation(%s, 'soak')).id", (AGENT,)).fetchone()[0] for _ in range(8)]
    with psycopg.connect(f"host=127.0.0.1 port={port} dbname=bench user=postgres", autocommit=True) as admin:
        def pids():
            rows = admin.execute("SELECT pid, backend_type FROM pg_stat_activity WHERE datname = 'bench' AND pid <> pg_backend_pid() "
                                 "OR backend_type = 'memory_ext worker'").fetchall()
            return {pid: kind for pid, kind in rows}
        deadline = time.monotonic() + 15  # the worker (re)connects once the database exists
        while "memory_ext worker" not in pids().values() and time.monotonic() < deadline:
            time.sleep(0.2)
        before = {pid: rss_kb(pid) for pid in pids()}
        lat = {"add_message": [], "build_context 8k": []}
        stop = time.monotonic() + seconds
        rng = random.Random(7)

        def writer(c, w):
            i = 0
            while time.monotonic() < stop:
                t = time.perf_counter()
                c.execute("SELECT memory.add_message(%s, %s, %s)", (cids[(w + i) % 8], "user" if i % 2 == 0 else "assistant",
                                                                       f"turn {i} of writer {w}: " + "words " * rng.randint(5, 60)))
                lat["add_message"].append((time.perf_counter() - t) * 1000)
                i += 1

        def reader(c, r):
            i = 0
            while time.monotonic() < stop:
                t = time.perf_counter()
                c.execute("SELECT memory.build_context(%s, 8000)", (cids[(r + i) % 8],)).fetchone()
                lat["build_context 8k"].append((time.perf_counter() - t) * 1000)
                i += 1

        threads = [threading.Thread(target=writer, args=(c, w)) for w, c in enumerate(conns["writer"])]
        threads += [threading.Thread(target=reader, args=(c, r)) for r, c in enumerate(conns["reader"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = {pid: rss_kb(pid) for pid in pids() if pid in before}
        done = admin.execute("SELECT count(*) FROM memory.conversation_summaries").fetchone()[0]
        jobs = dict(admin.execute("SELECT status, count(*) FROM memory.jobs GROUP BY 1").fetchall())
        kinds = pids()
    print(f"== soak: {seconds} s, 4 writers, 2 readers, the worker (extractive summaries)")
    for op, xs in lat.items():
        xs.sort()
        print(f"  {op:<18} {len(xs):>7} calls  p50 {xs[len(xs) // 2]:7.2f} ms  p99 {xs[int(len(xs) * 0.99)]:7.2f} ms")
    for pid in sorted(after):
        print(f"  {kinds.get(pid, '?'):<28} pid {pid:>7}: private RSS {before[pid] / 1024:6.1f} MB before, {after[pid] / 1024:6.1f} MB after")
    print(f"  summaries written: {done}; jobs: {jobs}")
    for c in conns["writer"] + conns["reader"]:
        c.close()


def only(a):
    """One part alone (adapters, history: on a 10,000-message history among others; search and
    recall: their own 1,000,000 messages), written to OUT/<part>.md."""
    import adapters as adapters_bench
    import history as history_bench
    import search as search_bench
    if a.only == "search":
        title, lines = "search", search_bench.report_lines(search_bench.run(a.port, prose, a.smoke))
    elif a.only == "recall":
        import recall as recall_bench
        title, lines = "semantic and hybrid search", recall_bench.report_lines(
            recall_bench.run(a.port, prose, a.smoke, a.llm_port or a.port + 2))
    elif a.only == "adapters":
        conn, convs = setup_db(a.port, [10_000], 1000)
        title, lines = "Python adapters", adapters_bench.report_lines(adapters_bench.run(
            conn, convs, 10_000, 8000, USER_ID, a.smoke, timed, langchain_lc, memory_ext, payload_tokens))
    elif a.only == "append-profile":
        import append_profile
        setup_writes_db(a.port)
        title, lines = "where an append's time goes", append_profile.report_lines(
            append_profile.run(a.port, USER_ID, AGENT, 2 if a.smoke else 10))
    elif a.only == "scale":
        import scale as scale_bench
        title, lines = "many readable conversations", scale_bench.report_lines(scale_bench.run(a.port, a.smoke))
    elif a.only == "sharing":
        import sharing as sharing_bench
        conn, convs = setup_db(a.port, [10_000], 1000)
        title, lines = "the authorization rule with sharing", sharing_bench.report_lines(
            sharing_bench.run(conn, convs, 10_000, USER_ID, a.smoke, AGENT))
    else:
        conn, convs = setup_db(a.port, [10_000], 1000)
        title, lines = "export, import and fork", history_bench.report_lines(history_bench.run(conn, convs, 10_000, a.smoke))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(os.path.join(a.out, f"{a.only}.md"), "w") as f:
        f.write("\n".join([f"# memory_ext: {title}", "", f"{date} on {platform.machine()}, {os.cpu_count()} cores. "
                           f"Command: `bench/run.sh --{a.only}`."] + lines) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--plain-port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--writes-only", action="store_true", help="only the append benchmark, printed (no report files)")
    ap.add_argument("--only", choices=["adapters", "history", "search", "recall", "sharing", "scale", "append-profile"],
                    help="one part alone on a 10,000-message history, written to OUT/<part>.md")
    ap.add_argument("--soak", type=int, metavar="SECONDS", help="writers + readers + worker for SECONDS, printed")
    ap.add_argument("--turns-port", type=int, help="a cluster whose worker serves database bench: chat turns and reply jobs")
    ap.add_argument("--llm-port", type=int, help="where the stand-in LLM listens (the turns cluster calls it)")
    ap.add_argument("--replies", action="store_true",
                    help="the worker's reply throughput alone (with --turns-port, --llm-port), written to OUT/replies.md")
    a = ap.parse_args()
    if a.soak:
        soak(a.port, a.soak)
        return
    if a.writes_only:
        setup_writes_db(a.port)
        bench_writes(a.port, a.smoke)
        return
    if a.only:
        only(a)
        return
    if a.replies:
        import turns as turns_bench
        turns_bench.run_replies(a.turns_port, a.llm_port, a.out)
        return
    sizes = [100, 1000] if a.smoke else [1000, 10_000, 100_000]
    budgets = [8000, 32000]
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "command": "bench/run.sh" + (" --smoke" if a.smoke else "")}
    print("== storing conversations", flush=True)
    conn, convs = setup_db(a.port, sizes, 200 if a.smoke else 1000)
    print("== context window", flush=True)
    ctx = bench_context(conn, convs, sizes, budgets, a.smoke)
    print("== Python adapters", flush=True)
    import adapters as adapters_bench
    adapters = adapters_bench.run(conn, convs, sizes[1], 8000, USER_ID, a.smoke, timed, langchain_lc, memory_ext, payload_tokens)
    print("== export, import and fork", flush=True)
    import history as history_bench
    history = history_bench.run(conn, convs, sizes[1], a.smoke)
    print("== search", flush=True)
    import search as search_bench
    search = search_bench.run(a.port, prose, a.smoke)
    print("== token counting", flush=True)
    counting = bench_counting(a.port, a.out, a.smoke)
    print("== new connections", flush=True)
    cold = bench_cold_start(a.port, a.plain_port, a.smoke)
    print("== writes", flush=True)
    writes = bench_writes(a.port, a.smoke)
    turns = None
    if a.turns_port:
        print("== chat turns", flush=True)
        import turns as turns_bench
        turns = turns_bench.run(a.turns_port, a.llm_port, a.smoke)
    plans = explain_plans(conn, convs, sizes)
    print("== the authorization rule with sharing", flush=True)
    import sharing as sharing_bench
    sharing = sharing_bench.run(conn, convs, sizes[1], USER_ID, a.smoke, AGENT)
    report(a.out, meta, ctx, counting, cold, writes, budgets, plans, turns, adapters, history, search, sharing)
    bad = [r for r in ctx if r["method"] == "memory_ext" and not (r["fits"] and r["valid_payload"])]
    if bad or not all(counting[e]["identical"] for e in ("cl100k_base", "o200k_base")):
        sys.exit("memory_ext produced an over-budget or invalid window, or counts that differ from tiktoken")
    print(f"== wrote {a.out}/results.md, results.json, context.png")


if __name__ == "__main__":
    main()
