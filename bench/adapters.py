"""The Python package's adapters on the benchmark's stored histories: an 8k-token window as
LangChain messages through MemoryExChatMessageHistory.context() next to what LangChain users
do today (langchain-postgres' PostgresChatMessageHistory + trim_messages with an exact
counter) on the same messages, and the adapter's overhead over the raw SQL call of
build_context (the typed client alone, and with the conversion to LangChain messages)."""
from memory_ext import MemoryClient
from memory_ext.langchain import MemoryExChatMessageHistory


def run(conn, convs, size, budget, user_id, smoke, timed, langchain_window, raw_window, payload_tokens):
    c = convs[f"n{size}"]
    client = MemoryClient(conn, user_id=user_id)
    history = MemoryExChatMessageHistory(str(c["cid"]), client=client)
    history.context(budget)  # warm
    reps, lc_reps = (1, 1) if smoke else (25, 3)
    methods = {
        "raw SQL: SELECT memory.build_context (psycopg)": lambda: raw_window(conn, c["cid"], budget),
        "memory_ext client: build_context (typed Window)": lambda: client.build_context(c["cid"], budget).messages,
        "LangChain adapter: history.context() (LangChain messages)": lambda: history.context(budget),
        "langchain-postgres get_messages + trim_messages": lambda: langchain_window(conn, c["session"], budget),
    }
    rows, base = [], None
    for name, fn in methods.items():
        t, out = timed(fn, lc_reps if name.startswith("langchain-postgres") else reps)
        base = base or t["median_ms"]
        openai = out if isinstance(out[0], dict) else _as_openai(out)
        rows.append({"messages_in_history": size, "budget": budget, "method": name, **t,
                     "ratio_vs_raw_sql": t["median_ms"] / base, "returned_messages": len(out),
                     "tokens": payload_tokens(openai)})
        print(f"  {size:>6} msgs, budget {budget}: {name:<58} median {t['median_ms']:9.2f} ms "
              f"x{t['median_ms'] / base:7.2f} of raw SQL, {len(out)} msgs", flush=True)
    adapter = next(r for r in rows if r["method"].startswith("LangChain adapter"))
    peer = rows[-1]
    print(f"  LangChain: memory_ext adapter is {peer['median_ms'] / adapter['median_ms']:.0f}x faster than "
          f"langchain-postgres + trim_messages; adapter overhead over raw SQL "
          f"{adapter['median_ms'] - rows[0]['median_ms']:.3f} ms", flush=True)
    return rows


def _as_openai(messages):
    from langchain_core.messages import convert_to_openai_messages
    return convert_to_openai_messages(messages)


def report_lines(rows):
    lines = ["", "## Python adapters (client-observed median; ratio = method / raw SQL call)", "",
             "| messages | budget | method | median ms | min ms | × raw SQL | returned | tokens |",
             "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['messages_in_history']} | {r['budget']} | {r['method']} | {r['median_ms']:.2f} | "
                     f"{r['min_ms']:.2f} | {r['ratio_vs_raw_sql']:.2f} | {r['returned_messages']} | {r['tokens']} |")
    adapter = next(r for r in rows if r["method"].startswith("LangChain adapter"))
    lines += ["", f"The adapter returns its window {rows[-1]['median_ms'] / adapter['median_ms']:.0f}× faster than "
              "langchain-postgres + trim_messages on the same history; its overhead over the raw SQL call is "
              f"{adapter['median_ms'] - rows[0]['median_ms']:.2f} ms (one transaction that "
              "sets the identity, and the conversion to LangChain messages)."]
    return lines

