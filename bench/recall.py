"""Semantic and hybrid search at scale, next to text search and the bare vector scan in the same
run: one user's 10,000 messages among 1,000,000 of 1,000 users (smoke: 20 users of 50 messages),
every message with a 256-dimension embedding.

The searching user's messages carry the stand-in provider's vectors (tests/support/fake_llm.py:
one signed feature per word, synonyms sharing one), the other users' random vectors: they are
never in that user's scope, and are there so that the table and its index have a real size.
Queries are embedded during the search by the stand-in on 127.0.0.1, as a provider would be
called in production (its time is in the figures).

Recall@10 on a labelled set: 8 topics (the stand-in's synonym groups) × 6 "needle" messages
planted among the user's messages, each naming its topic with one of the group's first three
words inside random prose. Two queries per topic: a paraphrase (two other words of the group,
which no needle contains) and a keyword query (a word the needles use). A needle is relevant to
its topic's queries; recall@10 is the share of a topic's 6 needles among the first 10 results."""
import random
import statistics
import time
import uuid

import psycopg
import search as search_bench

from support.fake_llm import SYNONYMS, FakeLLM, embed

DIMS = 256
MODEL = "stand-in-embed"
NEEDLES = 6


def _topics():
    groups = {}
    for word, head in SYNONYMS.items():
        groups.setdefault(head, []).append(word)
    return [words for _, words in sorted(groups.items())]


def _literal(v):
    return "[" + ",".join(f"{x:.6g}" for x in v) + "]"


def _times(fn, reps):
    """The median ms of `reps` runs after a warm-up (search.py's timing)."""
    return search_bench._times(fn, reps)[0]


def setup(port, prose, smoke, llm_port):
    conn, total, mine, users = search_bench.setup(port, prose, smoke)
    focus = str(uuid.UUID(int=42))
    rng = random.Random(7)
    topics = _topics()
    cid = conn.execute("SELECT conversation_id FROM memory.conversation_messages LIMIT 1").fetchone()[0]
    needles = {}
    for t, words in enumerate(topics):
        for k in range(NEEDLES):
            text = f"{prose(rng, 4)} {words[k % 3]} {prose(rng, 4)}"
            mid = conn.execute("SELECT (memory.add_message(%s, 'user', %s)).id", (cid, text)).fetchone()[0]
            needles.setdefault(t, set()).add(str(mid))
    t0 = time.perf_counter()
    with psycopg.connect(f"host=127.0.0.1 port={port} dbname=search user=postgres", autocommit=True) as su:
        rows = su.execute("SELECT m.id, m.conversation_id, m.content FROM memory.conversation_messages m "
                          "JOIN memory.conversations c ON c.id = m.conversation_id WHERE c.user_id = %s", (focus,)).fetchall()
        with su.cursor().copy("COPY memory.message_embeddings (message_id, conversation_id, model, embedding) FROM STDIN") as cp:
            for mid, conv, content in rows:
                cp.write_row((mid, conv, MODEL, _literal(embed(content, DIMS))))
        # everyone else's: random unit-free vectors, one per message (the subquery refers to the
        # row, so that each message gets its own)
        su.execute(f"""INSERT INTO memory.message_embeddings (message_id, conversation_id, model, embedding)
                       SELECT m.id, m.conversation_id, %s,
                              (SELECT array_agg(random() - 0.5)::real[] FROM generate_series(1, {DIMS}) WHERE m.id IS NOT NULL)::vector
                         FROM memory.conversation_messages m JOIN memory.conversations c ON c.id = m.conversation_id
                        WHERE c.user_id <> %s""", (MODEL, focus))
        su.execute("VACUUM ANALYZE memory.message_embeddings")
        size = su.execute("SELECT pg_total_relation_size('memory.message_embeddings')").fetchone()[0]
        for key, value in (("memory.embedding_model", MODEL), ("memory.llm_base_url", f"http://127.0.0.1:{llm_port}/v1"),
                           ("memory.embedding_dimensions", DIMS)):
            su.execute(f"ALTER SYSTEM SET {key} = '{value}'")
        su.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)
    # a new session of the user, with the reloaded settings
    conn.close()
    conn = psycopg.connect(f"host=127.0.0.1 port={port} dbname=search user=bench", autocommit=True)
    conn.execute("SELECT set_config('memory.user_id', %s, false)", (focus,))
    print(f"  embedded {total + len(topics) * NEEDLES} messages ({DIMS} dimensions, {size / 2**20:.0f} MB with indexes) "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)
    return conn, topics, needles, total, mine + len(topics) * NEEDLES, users


def run(port, prose, smoke, llm_port):
    llm = FakeLLM(llm_port)
    try:
        conn, topics, needles, total, mine, users = setup(port, prose, smoke, llm_port)
        reps = 3 if smoke else 30
        rows = []
        search = "SELECT memory.search_messages(%s, \"limit\" => 20, mode => %s)"
        for label, q in [("rare word", "kubernetes"), ("two words", "paris weather"), ("paraphrase", "automobile mechanic")]:
            row = {"query": label, "q": q}
            for mode in ("text", "semantic", "hybrid"):
                row[mode] = _times(lambda: conn.execute(search, (q, mode)).fetchone(), reps)
            # the floor: the same exact scan of the user's vectors, a precomputed query vector,
            # no memory_ext function and no provider call, as the superuser
            qv = _literal(embed(q, DIMS))
            with psycopg.connect(f"host=127.0.0.1 port={port} dbname=search user=postgres", autocommit=True) as su:
                convs = [r[0] for r in su.execute("SELECT id FROM memory.conversations WHERE user_id = %s",
                                                  (str(uuid.UUID(int=42)),)).fetchall()]
                row["floor"] = _times(lambda: su.execute(
                    "SELECT message_id FROM memory.message_embeddings WHERE conversation_id = ANY (%s) AND model = %s "
                    "ORDER BY embedding <=> %s::vector LIMIT 20", (convs, MODEL, qv)).fetchall(), reps)
            rows.append(row)
            print(f"  {label:<11} {q!r:<24} text {row['text']:6.2f} ms  semantic {row['semantic']:6.2f} ms  "
                  f"hybrid {row['hybrid']:6.2f} ms (x{row['hybrid'] / row['text']:.1f} text)  "
                  f"bare vector scan {row['floor']:6.2f} ms", flush=True)
        recall = {"paraphrase": {}, "keyword": {}}
        for t, words in enumerate(topics):
            for kind, q in (("paraphrase", " ".join(words[-2:])), ("keyword", words[0])):
                for mode in ("text", "semantic", "hybrid"):
                    page = conn.execute("SELECT memory.search_messages(%s, \"limit\" => 10, mode => %s)", (q, mode)).fetchone()[0]
                    got = {r["message_id"] for r in page["results"]} & needles[t]
                    recall[kind].setdefault(mode, []).append(len(got) / NEEDLES)
        for kind, by_mode in recall.items():
            print(f"  recall@10, {kind} queries: " + ", ".join(f"{m} {statistics.mean(v):.2f}" for m, v in by_mode.items()),
                  flush=True)
        conn.close()
        return {"rows": rows, "recall": {k: {m: statistics.mean(v) for m, v in d.items()} for k, d in recall.items()},
                "total": total, "mine": mine, "users": users, "topics": len(topics)}
    finally:
        llm.stop()


def report_lines(r):
    lines = ["", f"## Semantic and hybrid search ({r['mine']} messages of one user among {r['total']} of {r['users']} users, "
             f"{DIMS} dimensions)", "",
             "Median ms of `search_messages(q, \"limit\" => 20, mode => …)` as the user; semantic and hybrid include the",
             "query's embedding by the stand-in provider on 127.0.0.1. \"Bare scan\": the same exact scan of the user's",
             "vectors as a superuser with a precomputed query vector (the physical floor).", "",
             "| query | text | semantic | hybrid | hybrid ÷ text | bare scan | semantic ÷ bare scan |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {x['query']} `{x['q']}` | {x['text']:.2f} | {x['semantic']:.2f} | {x['hybrid']:.2f} | "
              f"{x['hybrid'] / x['text']:.1f} | {x['floor']:.2f} | {x['semantic'] / x['floor']:.1f} |" for x in r["rows"]]
    lines += ["", f"Recall@10 on the labelled set ({r['topics']} topics × {NEEDLES} planted messages; see bench/recall.py):", "",
              "| queries | text | semantic | hybrid |", "|---|---:|---:|---:|"]
    lines += [f"| {kind} | {m['text']:.2f} | {m['semantic']:.2f} | {m['hybrid']:.2f} |" for kind, m in r["recall"].items()]
    return lines
