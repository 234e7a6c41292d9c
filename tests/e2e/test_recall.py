"""Embeddings and semantic/hybrid search end to end, against the stand-in provider's /embeddings
(support/fake_llm.py: deterministic vectors in which synonyms share a feature): the worker embeds
new messages after the append commits, in batches, and stores a batch whole or not at all; a failed
call is retried; search_messages' modes find a paraphrase the words miss, within the read rule
(other users never, shared conversations once accepted); erasure takes the vectors along; bad
input is refused with its SQLSTATE; without a model, hybrid answers with the words and says so."""
import json
import time

import psycopg
import pytest

from support.pg import admin_on, app_on, app_session, fetch_on, llm_cluster, reload_setting, rpc, search, wait_for

AGENT = "a0000000-0000-0000-0000-00000000beef"
MODEL = "stand-in-embed"


@pytest.fixture(scope="module")
def pg(cluster, llm):
    settings = {"memory.llm_base_url": f"http://127.0.0.1:{llm.port}/v1", "memory.llm_api_key": "sk-recall-test",
                "memory.embedding_model": MODEL, "memory.embedding_batch": 4, "memory.llm_timeout": 5000,
                "memory.retry_backoff": 200, "memory.max_attempts": 3, "memory.worker_naptime": 50,
                "memory.user_id_roles": "app"}
    with llm_cluster("recall", cluster + 14, settings) as port:
        yield port


@pytest.fixture(autouse=True)
def answering(llm_ok):
    yield


def conversation(c, *contents):
    cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
    for i, text in enumerate(contents):
        c.execute("SELECT memory.add_message(%s, %s, %s)", (cid, "user" if i % 2 == 0 else "assistant", text))
    return cid


def embedded(port, cid):
    return fetch_on(port, "SELECT count(*) FROM memory.message_embeddings WHERE conversation_id = %s", cid)[0]


def embed_requests(llm):
    return [r for r in llm.requests if r["path"].endswith("/embeddings")]


def test_appends_commit_first_and_the_worker_embeds_them_in_batches(pg, llm):
    llm.delay = 3.0  # a slow provider: the appends must not wait for it
    before = len(embed_requests(llm))
    with app_session(pg) as c:
        started = time.monotonic()
        cid = conversation(c, *[f"note number {i} about the garden" for i in range(10)])
        appended = time.monotonic() - started
        # nothing embedded yet when the appends returned: the calls come after, from the worker
        assert embedded(pg, cid) == 0
        assert appended < 3.0, appended
        wait_for(lambda: embedded(pg, cid) == 10, timeout=30)
    calls = embed_requests(llm)[before:]
    # memory.embedding_batch = 4: calls of at most 4 inputs (the first job may start while the
    # appends go on), every message sent once, oldest first
    assert all(1 <= len(r["json"]["input"]) <= 4 for r in calls)
    assert [t for r in calls for t in r["json"]["input"]] == [f"note number {i} about the garden" for i in range(10)]
    assert all(r["json"]["model"] == MODEL and "dimensions" not in r["json"] for r in calls)
    assert calls[0]["headers"]["authorization"] == "Bearer sk-recall-test"
    # each call is recorded like any LLM call, charged to the conversation's owner
    with admin_on(pg) as a:
        rows = a.execute("SELECT kind, model, status, prompt_tokens FROM memory.llm_calls WHERE conversation_id = %s",
                         (cid,)).fetchall()
        assert [r[:3] for r in rows] == [("embed", MODEL, "ok")] * len(calls)
        assert all(r[3] > 0 for r in rows)
        dims = rpc(a, "SELECT DISTINCT vector_dims(embedding) FROM memory.message_embeddings WHERE conversation_id = %s", cid)
        assert dims == 64


@pytest.mark.parametrize("failure", ["500", "badjson", "empty"])
def test_a_failed_call_writes_nothing_and_is_retried(pg, llm, failure):
    llm.mode = failure
    with app_session(pg) as c:
        cid = conversation(c, "first words", "second words")
        job = wait_for(lambda: fetch_on(pg, "SELECT attempts, status, last_error FROM memory.jobs"
                                            " WHERE conversation_id = %s AND kind = 'embed' AND attempts > 0", cid))
        # the failed attempt is recorded and nothing of the batch was stored
        assert job[1] == "queued" and job[2], job
        assert embedded(pg, cid) == 0
        llm.mode = "ok"
        wait_for(lambda: embedded(pg, cid) == 2, timeout=30)
        status = fetch_on(pg, "SELECT status FROM memory.jobs WHERE conversation_id = %s AND kind = 'embed'"
                              " ORDER BY id DESC LIMIT 1", cid)[0]
        assert status == "done"


def test_semantic_and_hybrid_find_a_paraphrase_that_words_miss(pg):
    with app_session(pg) as c:
        cid = conversation(c, "My car broke down on the highway yesterday", "Sorry to hear that.",
                           "I love long walks on the beach", "Noted.")
        wait_for(lambda: embedded(pg, cid) == 4)
        assert search(c, "automobile repair", conversation_id=cid)["results"] == []
        for mode in ("semantic", "hybrid"):
            page = search(c, "automobile repair", conversation_id=cid, mode=mode)
            assert page["mode"] == mode
            assert [r["seq"] for r in page["results"]] == [1], page
            assert page["results"][0]["snippet"] == "My car broke down on the highway yesterday"
        # the filters apply to semantic hits as to words
        assert [r["seq"] for r in search(c, "automobile repair", conversation_id=cid, mode="semantic", role="user")["results"]] == [1]
        assert search(c, "automobile repair", conversation_id=cid, mode="semantic", role="assistant")["results"] == []
        # messages both rankings find come first in hybrid, each ranked by both lists
        page = search(c, "highway or beach", conversation_id=cid, mode="hybrid")
        assert sorted(r["seq"] for r in page["results"][:2]) == [1, 3], page
        assert all(r["rank"] > 1 / 61 for r in page["results"][:2])
        assert all(r["rank"] <= 1 / 61 for r in page["results"][2:])


def test_semantic_pages_cover_every_hit_once(pg):
    with app_session(pg) as c:
        cid = conversation(c, *[f"my dog number {i} likes the park" for i in range(9)])
        wait_for(lambda: embedded(pg, cid) == 9)
        seen, cursor = [], None
        while True:
            page = search(c, "puppy", conversation_id=cid, mode="semantic", limit=4,
                          **({"cursor": cursor} if cursor else {}))
            seen += [r["seq"] for r in page["results"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == list(range(1, 10))


def test_other_users_vectors_never_answer_and_shares_do_once_accepted(pg):
    alice, bob = "a11ce000-0000-0000-0000-000000000001", "b0b00000-0000-0000-0000-000000000002"
    with app_on(pg, alice) as a, app_on(pg, bob) as b:
        mine = conversation(a, "I am allergic to peanuts")
        theirs = conversation(b, "my doctor says I have a peanut allergy")
        wait_for(lambda: embedded(pg, mine) == 1 and embedded(pg, theirs) == 1)
        for mode in ("semantic", "hybrid"):
            hits = search(a, "nut allergy", mode=mode)["results"]
            assert {r["conversation_id"] for r in hits} == {str(mine)}, hits
            assert search(a, "nut allergy", mode=mode, conversation_id=theirs)["results"] == []
        # the vectors themselves: RLS shows a user only what it reads
        assert rpc(a, "SELECT count(*) FROM memory.message_embeddings WHERE conversation_id = %s", theirs) == 0
        b.execute("SELECT memory.share_conversation(%s, %s)", (theirs, alice))
        hits = search(a, "nut allergy", mode="semantic")["results"]
        assert {r["conversation_id"] for r in hits} == {str(mine), str(theirs)}
        b.execute("SELECT memory.unshare_conversation(%s, %s)", (theirs, alice))
        assert {r["conversation_id"] for r in search(a, "nut allergy", mode="semantic")["results"]} == {str(mine)}
    # no identity: nothing
    with psycopg.connect(f"host=127.0.0.1 port={pg} dbname=postgres user=app", autocommit=True) as anon:
        assert search(anon, "nut allergy", mode="semantic")["results"] == []


def test_erasure_and_deletion_take_the_vectors(pg):
    user = "e7a5e000-0000-0000-0000-000000000003"
    with app_on(pg, user) as c:
        cid = conversation(c, "my holiday in Lisbon", "sounds lovely", "the trip was long")
        wait_for(lambda: embedded(pg, cid) == 3)
        c.execute("SELECT memory.rewind_conversation(%s, 1)", (cid,))
        assert embedded(pg, cid) == 1
    with admin_on(pg) as a:
        a.execute("SELECT memory.erase_user(%s)", (user,))
        assert rpc(a, "SELECT count(*) FROM memory.message_embeddings WHERE conversation_id = %s", cid) == 0


def test_bad_input_is_refused_and_changes_nothing(pg):
    with app_session(pg) as c:
        for mode, code in (("fuzzy", "22023"), (None, "22023")):
            with pytest.raises(psycopg.Error) as e:
                search(c, "anything", mode=mode)
            assert e.value.sqlstate == code
        # an empty query finds nothing (no provider call)
        assert search(c, "   ", mode="semantic")["results"] == []
        # users cannot write vectors, nor call the worker's functions
        for sql in ("INSERT INTO memory.message_embeddings (message_id, conversation_id, model, embedding)"
                    " SELECT id, conversation_id, 'x', '[1,2]' FROM memory.conversation_messages LIMIT 1",
                    "SELECT memory._store_embeddings(gen_random_uuid(), 'x', '{}', '{}', '{}')",
                    "SELECT memory.queue_embeddings()"):
            with pytest.raises(psycopg.Error) as e:
                c.execute(sql)
            assert e.value.sqlstate == "42501", sql


def test_a_provider_failure_during_search_is_a_clear_error(pg, llm):
    with app_session(pg) as c:
        llm.mode = "429"
        with pytest.raises(psycopg.Error) as e:
            search(c, "car", mode="hybrid")
        assert e.value.sqlstate == "PT429"
        llm.mode = "500"
        with pytest.raises(psycopg.Error) as e:
            search(c, "car", mode="semantic")
        assert e.value.sqlstate == "PT502" and "search_messages" in str(e.value)


def test_without_a_model_hybrid_says_it_used_the_words(pg, llm):
    with app_session(pg) as c:
        cid = conversation(c, "the car needs new tyres")
        wait_for(lambda: embedded(pg, cid) == 1)
    reload_setting(pg, "memory.embedding_model", "")
    try:
        before = len(embed_requests(llm))
        with app_session(pg) as c:
            other = conversation(c, "the automobile is fine")
            page = search(c, "car", mode="hybrid")
            assert page["mode"] == "text"
            with pytest.raises(psycopg.Error) as e:
                search(c, "car", mode="semantic")
            assert e.value.sqlstate == "55000"
            time.sleep(0.5)
            # no embed job was queued, no call made
            assert fetch_on(pg, "SELECT count(*) FROM memory.jobs WHERE conversation_id = %s", other)[0] == 0
        assert len(embed_requests(llm)) == before
    finally:
        reload_setting(pg, "memory.embedding_model", MODEL)
    # queue_embeddings picks up what was written meanwhile
    with admin_on(pg) as a:
        assert rpc(a, "SELECT memory.queue_embeddings(%s)", other) == 1
    wait_for(lambda: embedded(pg, other) == 1)


def test_build_context_recalls_relevant_older_messages_within_its_share(pg):
    with app_session(pg) as c:
        cid = conversation(c, "My car broke down on the highway yesterday", "That sounds stressful.")
        # a tool pair among the older messages: never recalled (half a pair is no valid payload)
        call = [{"id": "call_1", "type": "function", "function": {"name": "garage", "arguments": "{\"car\": 1}"}}]
        c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (cid, json.dumps(call)))
        c.execute("SELECT memory.add_message(%s, 'tool', 'car garage open', tool_call_id => 'call_1')", (cid,))
        for i in range(30):
            c.execute("SELECT memory.add_message(%s, %s, %s)",
                      (cid, "user" if i % 2 == 0 else "assistant", f"filler number {i} on gardening and tomatoes"))
        c.execute("SELECT memory.add_message(%s, 'user', 'any news on the automobile repair?')", (cid,))
        wait_for(lambda: embedded(pg, cid) == 34)  # all but the bare tool call (no content)

        def window(**kw):
            args = "".join(f", {k} => %({k})s" for k in kw)
            return c.execute(f"SELECT memory.build_context(%(id)s, 200{args})::text", {"id": cid, **kw}).fetchone()[0]

        # recall off: byte-identical to the window without the argument
        assert window(recall=0) == window()
        w = json.loads(window(recall=0.3))
        assert w["recall"]["reserved_tokens"] == 60 and w["max_tokens"] == 200
        assert 1 in w["recall"]["seqs"] and not {3, 4} & set(w["recall"]["seqs"])
        first = w["messages"][0]
        assert first["role"] == "system" and "[user 1] My car broke down on the highway yesterday" in first["content"]
        # exact: the stated count is the payload's, within the budget; the share holds the recall
        assert w["token_count"] == rpc(c, "SELECT memory.count_message_tokens(%s::jsonb)", json.dumps(w["messages"])) <= 200
        assert w["recall"]["tokens"] <= 60
        # never a message twice: the recalled ones are older than every message in the window
        shown = [m.get("content") for m in w["messages"][1:]]
        assert "My car broke down on the highway yesterday" not in shown
        assert shown[-1] == "any news on the automobile repair?"
        for bad in (0.9, -0.1):
            with pytest.raises(psycopg.Error) as e:
                window(recall=bad)
            assert e.value.sqlstate == "22023"


def test_recall_never_reads_another_users_conversation(pg):
    owner, other = "0aa00000-0000-0000-0000-000000000004", "0bb00000-0000-0000-0000-000000000005"
    with app_on(pg, owner) as a:
        cid = conversation(a, "my secret peanut allergy", "noted", "what about nuts?")
        wait_for(lambda: embedded(pg, cid) == 3)
    with app_on(pg, other) as b:
        with pytest.raises(psycopg.errors.NoDataFound):
            b.execute("SELECT memory.build_context(%s, 100, recall => 0.5)", (cid,))
        # the candidates' function is the caller's: RLS leaves nothing to rank
        assert b.execute("SELECT count(*) FROM memory._recall_candidates(%s, 100, 20, %s, NULL)", (cid, owner)).fetchone()[0] == 0
