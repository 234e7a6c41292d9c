"""Upgrades: a database made with any released version (0.1.0, 0.2.0) and upgraded with ALTER
EXTENSION UPDATE has exactly the catalog of a fresh install of this version, and its data keeps
working. Released install scripts never change."""
import hashlib
import os
import re
import subprocess
import uuid

import psycopg
import pytest

from support.pg import ROOT, connect

RELEASED = {
    # file under sql/released/ -> sha256 of the released text; a released script is never edited
    "memory_ext--0.1.0.sql": "64c83e79968547d54fdcd2691a70cfcdebce8c20759f72f5597f641dcd20f6fe",
    "memory_ext--0.1.0--0.2.0.sql": "3740ef2c4fcb879068e4fb27699021c70651016e9b6323bfe721b9beb2dcfea7",
    "memory_ext--0.2.0.sql": "cb333983bf8eca13ed1854e85ae5d9fac8a0febccd40817f29ef9ea38431868a",
}
RELEASED_DIR = os.path.join(ROOT, "sql", "released")
DELTAS_DIR = os.path.join(ROOT, "sql", "deltas")

with open(os.path.join(ROOT, "Cargo.toml")) as _f:
    CURRENT = re.search(r'^version = "([^"]+)"', _f.read(), re.M).group(1)

# Everything an extension defines, as text that must be equal between the two databases.
CATALOG = {
    "functions": """
        SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ')', pg_get_function_result(p.oid),
               l.lanname, p.prosecdef, p.provolatile, p.proparallel, p.proisstrict, p.procost, p.prorows,
               p.proleakproof, p.proconfig::text, p.prosrc, p.probin, p.proacl::text
          FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
         WHERE p.pronamespace = 'memory'::regnamespace""",
    "relations": """
        SELECT c.relname, c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity,
               c.relacl::text, c.reloptions::text
          FROM pg_class c WHERE c.relnamespace = 'memory'::regnamespace""",
    "columns": """
        SELECT c.relname, row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), a.attname,
               format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
               a.attidentity, a.attgenerated, a.attacl::text, a.attcollation::regcollation::text
          FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
          LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
         WHERE c.relnamespace = 'memory'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'c')
           AND a.attnum > 0 AND NOT a.attisdropped""",
    "indexes": """
        SELECT c.relname, pg_get_indexdef(i.indexrelid)
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE c.relnamespace = 'memory'::regnamespace""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'memory'::regnamespace""",
    "policies": """
        SELECT tablename, policyname, permissive, roles::text, cmd, qual, with_check
          FROM pg_policies WHERE schemaname = 'memory'""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(t.oid), tgenabled
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE c.relnamespace = 'memory'::regnamespace AND NOT t.tgisinternal""",
    "sequences": """
        SELECT sequencename, data_type::text, start_value, increment_by, max_value, cycle
          FROM pg_sequences WHERE schemaname = 'memory'""",
    "types": """
        SELECT t.typname, t.typtype FROM pg_type t
         WHERE t.typnamespace = 'memory'::regnamespace AND t.typrelid = 0""",
    "schema": """SELECT nspname, nspacl::text FROM pg_namespace WHERE nspname = 'memory'""",
    "extension": """
        SELECT e.extversion, e.extrelocatable,
               (SELECT array_agg(x::regclass::text ORDER BY x::regclass::text) FROM unnest(e.extconfig) x)::text,
               e.extcondition::text
          FROM pg_extension e WHERE e.extname = 'memory_ext'""",
    "members": """
        SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
          FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid AND d.refclassid = 'pg_extension'::regclass
         WHERE e.extname = 'memory_ext' AND d.deptype = 'e'""",
    "init_privileges": """
        SELECT pg_describe_object(classoid, objoid, objsubid), privtype, initprivs::text
          FROM pg_init_privs
         WHERE (classoid = 'pg_proc'::regclass AND objoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'memory'::regnamespace))
            OR (classoid = 'pg_class'::regclass AND objoid IN (SELECT oid FROM pg_class WHERE relnamespace = 'memory'::regnamespace))
            OR (classoid = 'pg_namespace'::regclass AND objoid = 'memory'::regnamespace)""",
}


def catalog(dbname):
    with connect(dbname) as c:
        return {name: sorted(tuple(str(v) for v in row) for row in c.execute(sql).fetchall()) for name, sql in CATALOG.items()}


def catalog_diff(a, b):
    """Human-readable differences: what only the upgraded and only the fresh database have."""
    out = []
    for name in CATALOG:
        only_a = [r for r in a[name] if r not in b[name]]
        only_b = [r for r in b[name] if r not in a[name]]
        out += [f"{name}: only upgraded: {r}" for r in only_a] + [f"{name}: only fresh: {r}" for r in only_b]
    return out


def fresh_db(name, version=None):
    with connect("postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    with connect(name) as c:
        c.execute("CREATE EXTENSION memory_ext" + (f" VERSION '{version}'" if version else "") + " CASCADE")
        c.execute(f"GRANT ALL ON DATABASE {name} TO PUBLIC")
        c.execute(f"ALTER DATABASE {name} SET memory.user_id_roles = 'app'")


def window_as(dbname, user, cid, budget, system_prompt=None):
    with connect(dbname, "app") as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
        return c.execute("SELECT memory.build_context(%s, %s, %s)", (cid, budget, system_prompt)).fetchone()[0]


def test_released_scripts_are_unchanged():
    """Every released script is pinned here, and none has changed since its release."""
    assert sorted(os.listdir(RELEASED_DIR)) == sorted(RELEASED), "a released script must be pinned in RELEASED"
    for name, digest in RELEASED.items():
        with open(os.path.join(RELEASED_DIR, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, f"{name} was released and must never change"


def test_the_installed_upgrade_script_is_the_generated_one(cluster):
    """The upgrade script to this version is the schema delta with the install script's
    functions, views, triggers, policies and privileges replayed (scripts/make_upgrade.py): what
    scripts/install.sh installed, no hand-made copy."""
    with connect("postgres") as c:
        sharedir = c.execute("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'").fetchone()[0]
    ext = os.path.join(sharedir, "extension")
    deltas = [n for n in os.listdir(DELTAS_DIR) if n.endswith(f"--{CURRENT}.sql")]
    assert len(deltas) == 1, deltas
    generated = subprocess.run(
        ["python3", os.path.join(ROOT, "scripts", "make_upgrade.py"), os.path.join(DELTAS_DIR, deltas[0]),
         os.path.join(ext, f"memory_ext--{CURRENT}.sql")], check=True, capture_output=True, text=True).stdout
    with open(os.path.join(ext, "memory_ext--" + deltas[0])) as f:
        installed = f.read()
    assert installed == generated
    assert installed.count("CREATE FUNCTION") == 0 and installed.count("CREATE OR REPLACE FUNCTION") > 100
    assert '\\echo Use "ALTER EXTENSION memory_ext UPDATE' in installed


def load_010_data(dbname, user):
    """Conversations, tool calls, summaries and queued jobs written through the 0.1.0 API."""
    with connect(dbname, "app") as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
        c.execute("SET memory.summarize_threshold = 200")
        cids = []
        for k in range(3):
            cid = c.execute("SELECT (memory.create_conversation(%s, %s, '{\"k\": 1}')).id", (str(uuid.uuid4()), f"conv {k}")).fetchone()[0]
            cids.append(cid)
            for i in range(10):
                c.execute("SELECT memory.add_message(%s, %s, %s)", (cid, "user" if i % 2 == 0 else "assistant", f"turn {i} " + "word " * 15))
            c.execute("""SELECT memory.add_message(%s, 'assistant', '', '[{"id":"u1","type":"function","function":{"name":"lookup","arguments":"{}"}}]')""",
                      (cid,))
            c.execute("SELECT memory.add_message(%s, 'tool', 'found it', tool_call_id => 'u1')", (cid,))
            c.execute("""SELECT memory.add_message(%s, 'assistant', 'booked', '[{"id":"g1","tool":"book","input":{"n":2},"output":"ok"}]')""", (cid,))
        c.execute("INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model) VALUES (%s, 6, 'six turns', 'app')",
                  (cids[0],))
        c.execute("SELECT memory.request_summary(%s)", (cids[1],))
    return cids


def test_upgrade_from_010_equals_a_fresh_install_and_keeps_the_data(cluster):
    up, fresh = "upgrade_from_010", "upgrade_fresh"
    fresh_db(up, "0.1.0")
    user = str(uuid.uuid4())
    cids = load_010_data(up, user)

    def window(cid, budget):
        return window_as(up, user, cid, budget, "be brief")

    before = {(cid, b): window(cid, b) for cid in cids for b in (120, 400, 8000)}
    with connect(up) as c:
        jobs_before = c.execute("SELECT id, conversation_id, status FROM memory.summary_jobs ORDER BY id").fetchall()
        c.execute("ALTER EXTENSION memory_ext UPDATE")
        assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'memory_ext'").fetchone()[0] == CURRENT
    fresh_db(fresh)
    diff = catalog_diff(catalog(up), catalog(fresh))
    assert diff == [], "\n".join(diff)

    # the old data works as before
    assert {k: window(*k) for k in before} == before
    with connect(up) as c:
        # the summary queue became the generic one, ids and states kept
        jobs_after = c.execute("SELECT id, conversation_id, status FROM memory.jobs WHERE kind = 'summary' ORDER BY id").fetchall()
        assert jobs_after == jobs_before and jobs_before
        assert c.execute("SELECT count(*) FROM memory.jobs WHERE user_id IS NULL").fetchone()[0] == 0
        next_id = c.execute("SELECT nextval('memory.jobs_id_seq')").fetchone()[0]
        assert next_id > max(j[0] for j in jobs_before)
    with connect(up, "app") as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
        for cid in cids:
            last = c.execute("SELECT last_seq FROM memory.conversations WHERE id = %s", (cid,)).fetchone()[0]
            assert c.execute("SELECT (memory.add_message(%s, 'user', 'after the upgrade')).seq", (cid,)).fetchone()[0] == last + 1
        status = c.execute("SELECT memory.summary_status(%s)", (cids[1],)).fetchone()[0]
        assert status["job"]["status"] == "queued"
        assert c.execute("SELECT memory.summary_status(%s)", (cids[0],)).fetchone()[0]["summary"]["covers_through_seq"] == 6
        # messages stored before the upgrade are found by search (the index was filled), and
        # their search column stays out of get_messages
        hits = c.execute("SELECT memory.search_messages('booked', \"limit\" => 100)").fetchone()[0]["results"]
        assert sorted(h["conversation_id"] for h in hits) == sorted(map(str, cids))
        assert len(c.execute("SELECT memory.search_messages('lookup')").fetchone()[0]["results"]) == 3  # a tool call's name
        assert "search_vector" not in c.execute("SELECT memory.get_messages(%s)", (cids[0],)).fetchone()[0]["messages"][0]
        # a tool result for a call made before the upgrade is still checked against it
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            c.execute("SELECT memory.add_message(%s, 'tool', 'again', tool_call_id => 'u1')", (cids[0],))
        # a conversation made before the upgrade takes an agent registered afterwards under its agent_id
        agent_id = c.execute("SELECT agent_id FROM memory.conversations WHERE id = %s", (cids[2],)).fetchone()[0]
        c.execute("INSERT INTO memory.agents (id, name, system_prompt, auto_reply) VALUES (%s, 'late', 'Registered later.', true)", (agent_id,))
        ctx = c.execute("SELECT memory.build_context(%s)", (cids[2],)).fetchone()[0]
        assert ctx["messages"][0] == {"role": "system", "content": "Registered later."} and ctx["max_tokens"] == 6000
        c.execute("SELECT memory.add_message(%s, 'user', 'hello agent')", (cids[2],))
    with connect(up) as c:
        assert c.execute("SELECT status FROM memory.jobs WHERE kind = 'reply' AND conversation_id = %s", (cids[2],)).fetchall() == [("queued",)]
    with connect("postgres") as c:
        c.execute(f"DROP DATABASE {up} WITH (FORCE)")
        c.execute(f"DROP DATABASE {fresh} WITH (FORCE)")


def test_every_released_version_has_its_install_script_and_an_upgrade_path():
    released = sorted(m.group(1) for n in RELEASED if (m := re.fullmatch(r"memory_ext--([^-]+)\.sql", n)))
    assert released, "no released install script"
    steps = {tuple(re.fullmatch(r"memory_ext--(.+)--(.+)\.sql", n).groups()) for n in RELEASED if n.count("--") == 2}
    steps |= {tuple(re.fullmatch(r"(.+)--(.+)\.sql", n).groups()) for n in os.listdir(DELTAS_DIR)}
    for version in released:
        v = version
        while v != CURRENT:
            nxt = [b for a, b in steps if a == v]
            assert len(nxt) == 1, f"no single upgrade step from {v}"
            v = nxt[0]


def load_020_data(dbname, user):
    """Conversations with an agent, tool calls, a summary, a share and a template, written
    through the 0.2.0 API; a finished LLM call as the worker recorded it then."""
    other = str(uuid.uuid4())
    with connect(dbname, "app") as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
        agent = c.execute("SELECT (memory.create_agent('helper', 'You are helpful.')).id").fetchone()[0]
        cids = []
        for k in range(2):
            cid = c.execute("SELECT (memory.create_conversation(%s, %s)).id", (agent, f"conv {k}")).fetchone()[0]
            cids.append(cid)
            for i in range(8):
                c.execute("SELECT memory.add_message(%s, %s, %s)", (cid, "user" if i % 2 == 0 else "assistant", f"turn {i} " + "word " * 12))
            c.execute("""SELECT memory.add_message(%s, 'assistant', '', '[{"id":"u1","type":"function","function":{"name":"lookup","arguments":"{}"}}]')""",
                      (cid,))
            c.execute("SELECT memory.add_message(%s, 'tool', 'found it', tool_call_id => 'u1')", (cid,))
        c.execute("SELECT memory.share_conversation(%s, %s, 'viewer')", (cids[0], other))
        c.execute("SELECT memory.save_as_template(%s, 'tpl')", (cids[1],))
    with connect(dbname) as c:
        c.execute("INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model) VALUES (%s, 4, 'four turns', 'app')",
                  (cids[0],))
        c.execute("""INSERT INTO memory.llm_calls (conversation_id, user_id, agent_id, kind, model, prompt_tokens, completion_tokens,
                                                   total_tokens, local_prompt_tokens, latency_ms, status)
                     VALUES (%s, %s, %s, 'reply', 'm', 90, 10, 100, 95, 12.5, 'ok')""", (cids[0], user, agent))
    return cids, other


def test_upgrade_from_020_equals_a_fresh_install_and_keeps_the_data(cluster):
    up, fresh = "upgrade_from_020", "upgrade_fresh_020"
    fresh_db(up, "0.2.0")
    user = str(uuid.uuid4())
    cids, other = load_020_data(up, user)

    def window(cid, budget, who=user):
        return window_as(up, who, cid, budget)

    before = {(cid, b): window(cid, b) for cid in cids for b in (60, 300, 8000)}
    shared_before = window(cids[0], 8000, other)
    # the analytics views (aggregating on read in 0.2.0, reading the daily rollups the upgrade fills)
    figures = ["SELECT day, user_id, agent_id, model, messages, stored_tokens, tool_calls, llm_calls, prompt_tokens, "
               "completion_tokens FROM memory.usage_daily ORDER BY 1, 2, 3, 4",
               "SELECT * FROM memory.conversation_activity ORDER BY 1, 5"]
    with connect(up) as c:
        day_before = c.execute("SELECT day_tokens FROM memory.user_usage WHERE user_id = %s", (user,)).fetchone()[0]
        figures_before = [c.execute(q).fetchall() for q in figures]
        assert all(figures_before)
        c.execute("ALTER EXTENSION memory_ext UPDATE")
        assert [c.execute(q).fetchall() for q in figures] == figures_before
        assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'memory_ext'").fetchone()[0] == CURRENT
    fresh_db(fresh)
    diff = catalog_diff(catalog(up), catalog(fresh))
    assert diff == [], "\n".join(diff)

    assert {k: window(*k) for k in before} == before
    # an upgraded conversation is a single-branch tree; an edit and a switch back give the same windows
    with connect(up, "app") as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
        [branch] = c.execute("SELECT memory.list_branches(%s)", (cids[1],)).fetchone()[0]
        assert branch["active"] and branch["messages"] == c.execute(
            "SELECT message_count FROM memory.conversations WHERE id = %s", (cids[1],)).fetchone()[0]
        first_user = c.execute("SELECT id FROM memory.conversation_messages WHERE conversation_id = %s AND role = 'user'"
                               " ORDER BY seq LIMIT 1", (cids[1],)).fetchone()[0]
        c.execute("SELECT memory.edit_message(%s, 'a different start')", (first_user,))
        assert window(cids[1], 8000)["messages"][-1] == {"role": "user", "content": "a different start"}
        c.execute("SELECT memory.switch_branch(%s, %s)", (cids[1], branch["leaf_id"]))
    assert {k: window(*k) for k in before if k[0] == cids[1]} == {k: v for k, v in before.items() if k[0] == cids[1]}
    # the share still holds; the agent's prompt is its owner's now (share_config is off)
    shared_after = window(cids[0], 8000, other)
    assert shared_before["messages"][0] == {"role": "system", "content": "You are helpful."}
    assert shared_after["messages"] == shared_before["messages"][1:]
    with connect(up, "app") as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (user,))
        last = c.execute("SELECT last_seq FROM memory.conversations WHERE id = %s", (cids[1],)).fetchone()[0]
        assert c.execute("SELECT (memory.add_message(%s, 'user', 'after the upgrade')).seq", (cids[1],)).fetchone()[0] == last + 1
        assert len(c.execute("SELECT memory.search_messages('lookup')").fetchone()[0]["results"]) == 2
        assert [t["name"] for t in c.execute("SELECT coalesce(jsonb_agg(to_jsonb(t)), '[]') FROM memory.list_templates() t").fetchone()[0]] == ["tpl"]
    with connect(up) as c:
        # the call recorded before the upgrade is kept; a call written the new way ('pending', then
        # completed) is charged its prompt first and the provider's difference afterwards
        assert c.execute("SELECT status, total_tokens FROM memory.llm_calls").fetchall() == [("ok", 100)]
        call = c.execute("""INSERT INTO memory.llm_calls (conversation_id, user_id, kind, model, local_prompt_tokens, status)
                            VALUES (%s, %s, 'reply', 'm', 50, 'pending') RETURNING id""", (cids[1], user)).fetchone()[0]
        day = lambda: c.execute("SELECT day_tokens FROM memory.user_usage WHERE user_id = %s", (user,)).fetchone()[0]  # noqa: E731
        assert day() == day_before + 50
        c.execute("UPDATE memory.llm_calls SET total_tokens = 70, status = 'ok' WHERE id = %s", (call,))
        assert day() == day_before + 70
    with connect("postgres") as c:
        c.execute(f"DROP DATABASE {up} WITH (FORCE)")
        c.execute(f"DROP DATABASE {fresh} WITH (FORCE)")
