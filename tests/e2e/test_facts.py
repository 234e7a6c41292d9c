"""Long-term memory end to end, against the stand-in provider (support/fake_llm.py: its extractor
turns "My X is Y" into a fact about X, updates it when X changes, drops it on "Forget my X", and
keeps "I am/have/like …" statements): the worker's extract jobs write facts from finished turns
with their sources and a supersede chain; a failed extraction is retried and writes nothing;
facts are embedded and recalled into another conversation of the same user, never into another
user's (not even through a shared conversation); chat turns and reply jobs use the agent's recall
share; users list, add, edit and delete their own facts only; erasure removes them."""
import json

import psycopg
import pytest

from support.pg import admin_on, app_on, fetch_on, llm_cluster, rpc, wait_for

MODEL = "stand-in-embed"
AGENT = "a0000000-0000-0000-0000-0000000000fc"  # an agent id without an agents row: the defaults apply
ALICE = "a11ce000-0000-0000-0000-0000000000fa"
BOB = "b0b00000-0000-0000-0000-0000000000fb"


@pytest.fixture(scope="module")
def pg(cluster, llm):
    settings = {"memory.llm_base_url": f"http://127.0.0.1:{llm.port}/v1", "memory.llm_api_key": "sk-facts-test",
                "memory.embedding_model": MODEL, "memory.extract_facts": "on", "memory.llm_timeout": 5000,
                "memory.retry_backoff": 200, "memory.max_attempts": 5, "memory.worker_naptime": 50,
                "memory.user_id_roles": "app"}
    with llm_cluster("facts", cluster + 15, settings) as port:
        yield port


@pytest.fixture(autouse=True)
def answering(llm_ok):
    yield


def turn(c, cid, said, answer="Noted."):
    """A finished turn: the user's message and a plain answer (which queues the extract job)."""
    mid = rpc(c, "SELECT (memory.add_message(%s, 'user', %s)).id", cid, said)
    c.execute("SELECT memory.add_message(%s, 'assistant', %s)", (cid, answer))
    return mid


def new_conversation(c, agent=AGENT):
    return rpc(c, "SELECT (memory.create_conversation(%s)).id", agent)


def facts(c, **kw):
    args = ", ".join(f"{k} => %({k})s" for k in kw)
    return c.execute(f"SELECT memory.list_facts({args})", kw).fetchone()[0]


def extracted(port, cid):
    """Whether the conversation's extract jobs are done with everything written so far."""
    return fetch_on(port, "SELECT count(*) = 0 FROM memory.jobs WHERE conversation_id = %s AND kind = 'extract'"
                          " AND status IN ('queued', 'running')", cid)[0] and \
        fetch_on(port, "SELECT count(*) > 0 FROM memory.jobs WHERE conversation_id = %s AND kind = 'extract'", cid)[0]


def all_embedded(c):
    return rpc(c, "SELECT bool_and(embedding IS NOT NULL) FROM memory.facts WHERE superseded_at IS NULL")


def extract_requests(llm):
    return [r for r in llm.requests if r["path"].endswith("/chat/completions")
            and "long-term memory facts" in r["json"]["messages"][0]["content"]]


def test_a_finished_turn_yields_a_fact_with_its_source_and_a_contradiction_supersedes_it(pg, llm):
    user = "0f000000-0000-0000-0000-0000000000f1"
    with app_on(pg, user) as c:
        first = new_conversation(c)
        source = turn(c, first, "My car is a red Volvo.")
        wait_for(lambda: facts(c) != [], timeout=30)
        [fact] = facts(c)
        assert fact["content"] == "The user's car is a red Volvo."
        assert fact["conversation_id"] == str(first) and fact["source_message_ids"] == [str(source)]
        assert fact["agent_id"] is None and fact["superseded_by"] is None
        wait_for(lambda: facts(c)[0]["embedded"])
        # the extraction was one chat call of its own kind, charged to the owner
        assert fetch_on(pg, "SELECT count(*) FROM memory.llm_calls WHERE conversation_id = %s AND kind = 'extract'"
                            " AND status = 'ok' AND user_id = %s", first, user)[0] == 1
        req = extract_requests(llm)[-1]["json"]
        assert req["response_format"] == {"type": "json_object"}
        assert "[user] My car is a red Volvo." in req["messages"][1]["content"]

        # another conversation of the same user changes it: the new fact supersedes the old one
        second = new_conversation(c)
        turn(c, second, "My car is a blue Tesla.")
        wait_for(lambda: facts(c)[0]["content"] == "The user's car is a blue Tesla.", timeout=30)
        assert len(facts(c)) == 1
        chain = facts(c, include_superseded=True)
        old, new = chain
        assert old["id"] == fact["id"] and old["superseded_by"] == new["id"] and old["superseded_at"]
        assert new["conversation_id"] == str(second)
        # the known fact was offered by number, so the LLM could name it
        assert "1. The user's car is a red Volvo." in extract_requests(llm)[-1]["json"]["messages"][1]["content"]

        # "forget" drops the current fact without a successor; nothing is deleted
        turn(c, second, "Forget my car please.")
        wait_for(lambda: facts(c) == [], timeout=30)
        chain = facts(c, include_superseded=True)
        assert len(chain) == 2 and chain[1]["superseded_by"] is None and chain[1]["superseded_at"]
        # every turn was read once: the progress mark is at the newest message
        assert fetch_on(pg, "SELECT through_seq FROM memory.fact_progress WHERE conversation_id = %s", second)[0] == 4


def test_a_failed_extraction_is_retried_and_writes_nothing(pg, llm):
    user = "0f000000-0000-0000-0000-0000000000f2"
    with app_on(pg, user) as c:
        cid = new_conversation(c)
        llm.mode = "badjson"
        turn(c, cid, "I have two cats.")
        job = wait_for(lambda: fetch_on(pg, "SELECT attempts, status, last_error FROM memory.jobs"
                                            " WHERE conversation_id = %s AND kind = 'extract' AND attempts > 0", cid))
        assert job[1] == "queued" and job[2], job
        # nothing of the batch: no fact, no progress
        assert facts(c, include_superseded=True) == []
        assert fetch_on(pg, "SELECT count(*) FROM memory.fact_progress WHERE conversation_id = %s", cid)[0] == 0
        llm.mode = "ok"
        wait_for(lambda: [f["content"] for f in facts(c)] == ["The user said: I have two cats."], timeout=30)


def test_a_fact_is_recalled_in_another_conversation_of_its_user_and_never_for_anyone_else(pg):
    with app_on(pg, ALICE) as a, app_on(pg, BOB) as b:
        origin = new_conversation(a)
        turn(a, origin, "I am allergic to peanuts.")
        wait_for(lambda: facts(a) != [] and all_embedded(a), timeout=30)
        [fact] = facts(a)

        later = new_conversation(a)
        a.execute("SELECT memory.add_message(%s, 'user', 'Which snacks are safe with my nut allergy?')", (later,))
        wait_for(lambda: fetch_on(pg, "SELECT count(*) FROM memory.message_embeddings WHERE conversation_id = %s", later)[0] == 1)
        w = rpc(a, "SELECT memory.build_context(%s, 300, recall => 0.4)", later)
        assert w["recall"]["facts"] == [fact["id"]] and w["recall"]["seqs"] == []
        first = w["messages"][0]
        assert first == {"role": "system",
                         "content": "Facts about the user (remembered):\n- The user said: I am allergic to peanuts."}
        assert w["token_count"] == rpc(a, "SELECT memory.count_message_tokens(%s::jsonb)", json.dumps(w["messages"])) <= 300
        assert w["recall"]["tokens"] <= w["recall"]["reserved_tokens"] == 120
        # recall off: no facts, and the window is the one without the argument
        assert rpc(a, "SELECT memory.build_context(%s, 300)::text", later) == \
            rpc(a, "SELECT memory.build_context(%s, 300, recall => 0)::text", later)

        # Bob asks the same in his own conversation: none of Alice's facts
        his = new_conversation(b)
        b.execute("SELECT memory.add_message(%s, 'user', 'Which snacks are safe with my nut allergy?')", (his,))
        wait_for(lambda: fetch_on(pg, "SELECT count(*) FROM memory.message_embeddings WHERE conversation_id = %s", his)[0] == 1)
        assert rpc(b, "SELECT memory.build_context(%s, 300, recall => 0.4)", his)["recall"]["facts"] == []
        # nor by asking for them: the table, the candidates function, edit and delete
        assert rpc(b, "SELECT count(*) FROM memory.facts") == 0
        assert b.execute("SELECT count(*) FROM memory._recall_candidates(%s, 100, 20, %s, NULL) WHERE fact_id IS NOT NULL",
                         (his, ALICE)).fetchone()[0] == 0
        with pytest.raises(psycopg.errors.NoDataFound):
            b.execute("SELECT memory.edit_fact(%s, 'The user likes peanuts.')", (fact["id"],))
        assert rpc(b, "SELECT memory.delete_fact(%s)", fact["id"]) is False
        assert b.execute("UPDATE memory.facts SET content = 'x'").rowcount == 0

        # through a conversation Alice shares, Bob reads her messages but never her facts
        a.execute("SELECT memory.share_conversation(%s, %s, 'editor')", (later, BOB))
        w = rpc(b, "SELECT memory.build_context(%s, 300, recall => 0.4)", later)
        assert w["recall"]["facts"] == [] and "peanuts" not in json.dumps(w["messages"])
        # and what Bob writes there is no source of facts about Alice
        turn(b, later, "My salary is one million.")
        wait_for(lambda: extracted(pg, later), timeout=30)
        assert [f["content"] for f in facts(a)] == ["The user said: I am allergic to peanuts."]
        assert facts(b) == []


def test_chat_turns_and_reply_jobs_use_the_agents_recall_share(pg, llm):
    user = "0f000000-0000-0000-0000-0000000000f4"
    with app_on(pg, user) as c:
        agent = rpc(c, "SELECT (memory.create_agent('helper', 'You help.')).id")
        c.execute("UPDATE memory.agents SET recall = 0.3 WHERE id = %s", (agent,))
        origin = new_conversation(c, agent)
        turn(c, origin, "I like hiking in the mountains.")
        wait_for(lambda: facts(c) != [] and all_embedded(c), timeout=30)
        cid = new_conversation(c, agent)
        c.execute("SELECT memory.add_message(%s, 'user', 'Plan a mountain hiking trip for me')", (cid,))
        wait_for(lambda: fetch_on(pg, "SELECT count(*) FROM memory.message_embeddings WHERE conversation_id = %s", cid)[0] == 1)
        before = len(llm.requests)
        # every user message here shares a word with the fact: the reply job below may take any of
        # them as its query, depending on which the worker embedded first
        c.execute("SELECT memory.chat(%s, 'Hiking somewhere near water, please')", (cid,))
        sent = [r for r in llm.requests[before:] if r["json"].get("messages") and r["json"]["messages"][0]["content"] == "You help."]
        messages = sent[0]["json"]["messages"]
        assert messages[1] == {"role": "system", "content": "Facts about the user (remembered):\n- The user said: I like hiking in the mountains."}
        assert messages[-1] == {"role": "user", "content": "Hiking somewhere near water, please"}

        # the worker's reply jobs build the same window
        c.execute("UPDATE memory.agents SET auto_reply = true WHERE id = %s", (agent,))
        before = len(llm.requests)
        c.execute("SELECT memory.add_message(%s, 'user', 'And for the hiking in winter?')", (cid,))
        wait_for(lambda: fetch_on(pg, "SELECT count(*) FROM memory.jobs WHERE conversation_id = %s AND kind = 'reply'"
                                      " AND status = 'done'", cid)[0] == 1, timeout=30)
        sent = [r for r in llm.requests[before:] if r["json"].get("messages") and r["json"]["messages"][0]["content"] == "You help."]
        assert "The user said: I like hiking in the mountains." in sent[0]["json"]["messages"][1]["content"]
        # an agent's share is bounded like build_context's
        with pytest.raises(psycopg.errors.CheckViolation):
            c.execute("UPDATE memory.agents SET recall = 0.9 WHERE id = %s", (agent,))


def test_users_manage_their_facts_and_bad_input_changes_nothing(pg):
    user = "0f000000-0000-0000-0000-0000000000f5"
    with app_on(pg, user) as c:
        agent = rpc(c, "SELECT (memory.create_agent('cook')).id")
        tea = rpc(c, "SELECT memory.add_fact('  The user prefers green tea.  ')")
        assert tea["content"] == "The user prefers green tea." and tea["conversation_id"] is None
        mine = rpc(c, "SELECT memory.add_fact('The user cooks vegetarian food.', %s)", agent)
        assert mine["agent_id"] == str(agent)
        # an agent's facts are listed for it and for no other agent
        assert len(facts(c)) == 2 and len(facts(c, agent_id=agent)) == 2
        other_agent = rpc(c, "SELECT (memory.create_agent('travel')).id")
        assert [f["id"] for f in facts(c, agent_id=other_agent)] == [tea["id"]]

        # an edit changes the text in place and clears the old vector until the worker embeds it anew
        c.execute("SELECT memory.add_message(%s, 'user', 'hello')", (new_conversation(c),))  # a conversation for the embed jobs
        wait_for(lambda: all_embedded(c), timeout=30)
        edited = rpc(c, "SELECT memory.edit_fact(%s, 'The user prefers black tea.')", tea["id"])
        assert edited["content"] == "The user prefers black tea." and edited["embedded"] is False
        assert edited["updated_at"] > tea["updated_at"]
        wait_for(lambda: all_embedded(c), timeout=30)
        assert rpc(c, "SELECT memory.delete_fact(%s)", mine["id"]) is True
        assert rpc(c, "SELECT memory.delete_fact(%s)", mine["id"]) is False

        before = facts(c, include_superseded=True)
        bad = [("SELECT memory.add_fact('   ')", "22023"),
               (f"SELECT memory.add_fact('{'x' * 1001}')", "22023"),
               ("SELECT memory.add_fact(NULL)", "22004"),
               ("SELECT memory.add_fact('x', 'a0000000-0000-0000-0000-000000000000')", "P0002"),
               ("SELECT memory.edit_fact('a0000000-0000-0000-0000-000000000000', 'x')", "P0002"),
               ("SELECT memory.edit_fact(NULL, 'x')", "22004"),
               (f"SELECT memory.edit_fact('{tea['id']}', '')", "22023"),
               # the columns only the worker writes, and someone else's name on a fact
               ("UPDATE memory.facts SET superseded_at = now()", "42501"),
               ("UPDATE memory.facts SET embedding = NULL", "42501"),
               (f"INSERT INTO memory.facts (user_id, content) VALUES ('{BOB}', 'x')", "42501"),
               ("SELECT memory._apply_facts(gen_random_uuid(), 1, '[]', '{}')", "42501")]
        for sql, code in bad:
            with pytest.raises(psycopg.Error) as e:
                c.execute(sql)
            assert e.value.sqlstate == code, sql
        assert facts(c, include_superseded=True) == before
    # without an identity there is no one to remember anything about
    with psycopg.connect(f"host=127.0.0.1 port={pg} dbname=postgres user=app", autocommit=True) as anon:
        with pytest.raises(psycopg.Error) as e:
            anon.execute("SELECT memory.add_fact('The user exists.')")
        assert e.value.sqlstate == "42501"
        assert rpc(anon, "SELECT memory.list_facts()") == []


def test_erasure_removes_a_users_facts(pg):
    user = "0f000000-0000-0000-0000-0000000000f6"
    with app_on(pg, user) as c:
        turn(c, new_conversation(c), "I work as a nurse.")
        wait_for(lambda: facts(c) != [], timeout=30)
        c.execute("SELECT memory.add_fact('The user is left-handed.')")
    with admin_on(pg) as a:
        counts = rpc(a, "SELECT memory.erase_user(%s)", user)
        assert counts["facts"] == 2
        assert rpc(a, "SELECT count(*) FROM memory.facts WHERE user_id = %s", user) == 0
