"""Branches: edit_message and regenerate keep what they replace as an inactive branch; list_branches
shows every branch; switch_branch brings one back with its messages' ids, contents and times (the
window, counters and search follow the active branch); a failed regeneration changes nothing;
only the owner edits and switches, readers list; bad input is refused and changes nothing. The
stand-in LLM (support/fake_llm.py) answers regenerations."""
import json
import threading
import time

import psycopg
import pytest

from support.pg import app_on, fetch_on, llm_cluster, rpc, search

OWNER = "b7a00000-0000-0000-0000-0000000000b1"
READER = "b7a00000-0000-0000-0000-0000000000b2"
STRANGER = "b7a00000-0000-0000-0000-0000000000b3"


@pytest.fixture(scope="module")
def pg(cluster, llm):
    settings = {"memory.llm_base_url": f"http://127.0.0.1:{llm.port}/v1", "memory.llm_model": "fake-model",
                "memory.llm_api_key": "sk-branches-test", "memory.llm_timeout": 2000, "memory.worker_naptime": 50,
                "memory.user_id_roles": "app"}
    with llm_cluster("branches", cluster + 16, settings) as port:
        yield port


@pytest.fixture(autouse=True)
def answering(llm_ok):
    yield


def conversation(c, *turns):
    agent = rpc(c, "SELECT (memory.create_agent('helper', 'You help.')).id")
    cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", agent)
    ids = []
    for i, text in enumerate(turns):
        ids.append(rpc(c, "SELECT (memory.add_message(%s, %s, %s)).id", cid, "user" if i % 2 == 0 else "assistant", text))
    return cid, ids


def active(c, cid):
    return [tuple(r) for r in c.execute("SELECT id, role, content FROM memory.conversation_messages"
                                        " WHERE conversation_id = %s ORDER BY seq", (cid,)).fetchall()]


def window(c, cid):
    w = rpc(c, "SELECT memory.build_context(%s, 4000)", cid)
    return w["messages"], w["token_count"]


def counters(c, cid):
    return tuple(c.execute("SELECT message_count, total_tokens FROM memory.conversations WHERE id = %s", (cid,)).fetchone())


def test_an_edit_keeps_the_old_branch_and_switching_back_restores_it_exactly(pg):
    with app_on(pg, OWNER) as c:
        cid, (u1, a1, u2, a2) = conversation(c, "Plan a trip to Rome", "Rome in May is lovely.",
                                             "Which museums?", "The Vatican Museums.")
        before = active(c, cid)
        before_window, before_counters = window(c, cid), counters(c, cid)
        created = rpc(c, "SELECT array_agg(created_at ORDER BY seq) FROM memory.conversation_messages WHERE conversation_id = %s", cid)

        new = c.execute("SELECT id, seq, role, content FROM memory.edit_message(%s, 'Which restaurants?')", (u2,)).fetchone()
        assert new[2:] == ("user", "Which restaurants?") and new[1] > 4
        assert active(c, cid) == before[:2] + [(new[0], "user", "Which restaurants?")]
        # the window and the counters follow the active branch
        assert window(c, cid)[0][-1] == {"role": "user", "content": "Which restaurants?"}
        assert counters(c, cid)[0] == 3
        # nothing was deleted: the old version and its answer wait, readable with the conversation
        stored = c.execute("SELECT id, parent_id, message->>'content' FROM memory.branch_messages"
                           " WHERE conversation_id = %s ORDER BY seq", (cid,)).fetchall()
        assert stored == [(u2, a1, "Which museums?"), (a2, u2, "The Vatican Museums.")]
        # search follows the active branch too
        assert search(c, "museums", conversation_id=cid)["results"] == []

        # the versions at that place: the new one (active) and the old one, with the leaf that shows it
        versions = rpc(c, "SELECT memory.message_siblings(%s)", new[0])
        assert [(v["id"], v["active"], v["leaf_id"], v["content"]) for v in versions] == [
            (str(new[0]), True, str(new[0]), "Which restaurants?"), (str(u2), False, str(a2), "Which museums?")]
        assert rpc(c, "SELECT memory.message_siblings(%s)", u2) == versions
        assert [v["id"] for v in rpc(c, "SELECT memory.message_siblings(%s)", u1)] == [str(u1)]

        branches = rpc(c, "SELECT memory.list_branches(%s)", cid)
        assert [(b["leaf_id"], b["active"], b["messages"]) for b in branches] == [(str(new[0]), True, 3), (str(a2), False, 4)]
        assert branches[1]["parts_after_seq"] == 2 and branches[1]["first"] == {"id": str(u2), "role": "user", "content": "Which museums?"}

        r = rpc(c, "SELECT memory.switch_branch(%s, %s)", cid, a2)
        assert r == {"active_leaf": str(a2), "stored": 1, "restored": 2}
        # the same messages (ids, contents, times), the same window and counters as before the edit
        assert active(c, cid) == before
        assert window(c, cid) == before_window and counters(c, cid) == before_counters
        assert rpc(c, "SELECT array_agg(created_at ORDER BY seq) FROM memory.conversation_messages WHERE conversation_id = %s", cid) == created
        assert sorted(r["message_id"] for r in search(c, "museums", conversation_id=cid)["results"]) == sorted([str(u2), str(a2)])
        # and the edited version now waits in its turn
        assert [b["leaf_id"] for b in rpc(c, "SELECT memory.list_branches(%s)", cid)] == [str(a2), str(new[0])]

        # a message inside the active branch: the branch ends there, the rest waits (a rewind that loses nothing)
        assert rpc(c, "SELECT memory.switch_branch(%s, %s)", cid, a1)["stored"] == 2
        assert [m[0] for m in active(c, cid)] == [u1, a1]
        rpc(c, "SELECT memory.switch_branch(%s, %s)", cid, a2)
        assert active(c, cid) == before


def test_regenerate_answers_again_and_a_failure_changes_nothing(pg, llm):
    with app_on(pg, OWNER) as c:
        cid, _ = conversation(c)
        first = rpc(c, "SELECT memory.chat(%s, 'Hello there')", cid)["message"]
        old_answer = active(c, cid)[-1]
        assert old_answer[2] == first["content"] == "You said: Hello there"
        again = rpc(c, "SELECT memory.regenerate(%s)", cid)
        assert again["message"]["content"] == "You said: Hello there"
        now = active(c, cid)
        assert len(now) == 2 and now[-1][0] != old_answer[0]
        leaves = rpc(c, "SELECT memory.list_branches(%s)", cid)
        assert [b["leaf_id"] for b in leaves] == [str(now[-1][0]), str(old_answer[0])]

        # the provider fails: the error is the turn's, and nothing moved
        llm.mode = "500"
        kept = active(c, cid), fetch_on(pg, "SELECT count(*) FROM memory.branch_messages WHERE conversation_id = %s", cid)[0]
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT memory.regenerate(%s)", (cid,))
        assert e.value.sqlstate == "PT502"
        assert (active(c, cid), fetch_on(pg, "SELECT count(*) FROM memory.branch_messages WHERE conversation_id = %s", cid)[0]) == kept


def test_only_the_owner_edits_and_switches_and_strangers_see_nothing(pg):
    with app_on(pg, OWNER) as o, app_on(pg, READER) as r, app_on(pg, STRANGER) as s:
        cid, (u1, a1) = conversation(o, "secret question", "secret answer")
        rpc(o, "SELECT (memory.edit_message(%s, 'another question')).id", u1)
        o.execute("SELECT memory.share_conversation(%s, %s, 'editor')", (cid, READER))
        # an editor reads the branches, but edits and switches are the owner's
        assert len(rpc(r, "SELECT memory.list_branches(%s)", cid)) == 2
        for sql, args in (("SELECT memory.edit_message(%s, 'x')", (a1,)),
                          ("SELECT memory.switch_branch(%s, %s)", (cid, a1)),
                          ("SELECT memory.regenerate(%s)", (cid,))):
            with pytest.raises(psycopg.Error) as e:
                r.execute(sql, args)
            assert e.value.sqlstate in ("42501", "P0002"), sql
        # a stranger: as if the conversation did not exist, and the stored rows are invisible
        for sql, args in (("SELECT memory.list_branches(%s)", (cid,)),
                          ("SELECT memory.switch_branch(%s, %s)", (cid, u1)),
                          ("SELECT memory.regenerate(%s)", (cid,))):
            with pytest.raises(psycopg.errors.NoDataFound):
                s.execute(sql, args)
        with pytest.raises(psycopg.errors.NoDataFound):
            s.execute("SELECT memory.message_siblings(%s)", (u1,))
        assert rpc(s, "SELECT count(*) FROM memory.branch_messages") == 0
        assert s.execute("DELETE FROM memory.branch_messages").rowcount == 0
        assert fetch_on(pg, "SELECT count(*) FROM memory.branch_messages WHERE conversation_id = %s", cid)[0] == 2


def test_bad_input_is_refused_and_changes_nothing(pg):
    call = [{"id": "call_b1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}]
    with app_on(pg, OWNER) as c:
        cid, (u1,) = conversation(c, "what time is it?")
        tool_call = rpc(c, "SELECT (memory.add_message(%s, 'assistant', '', %s::jsonb)).id", cid, json.dumps(call))
        result = rpc(c, "SELECT (memory.add_message(%s, 'tool', '12:00', tool_call_id => 'call_b1')).id", cid)
        other_cid, _ = conversation(c, "elsewhere")
        before = active(c, cid)
        bad = [("SELECT memory.edit_message(%s, 'x')", (tool_call,), "22023"),     # a tool call: not a plain message
               ("SELECT memory.edit_message(%s, 'x')", (result,), "22023"),        # a tool result
               ("SELECT memory.edit_message(%s, NULL)", (u1,), "22004"),
               ("SELECT memory.edit_message(gen_random_uuid(), 'x')", (), "P0002"),
               ("SELECT memory.switch_branch(%s, gen_random_uuid())", (cid,), "P0002"),
               ("SELECT memory.switch_branch(%s, %s)", (other_cid, u1), "P0002"),  # a message of another conversation
               ("SELECT memory.switch_branch(%s, %s)", (cid, tool_call), "22023"),  # would cut the call from its result
               ("SELECT memory.regenerate(NULL)", (), "22004")]
        for sql, args, code in bad:
            with pytest.raises(psycopg.Error) as e:
                c.execute(sql, args)
            assert e.value.sqlstate == code, sql
        assert active(c, cid) == before
        assert rpc(c, "SELECT count(*) FROM memory.branch_messages WHERE conversation_id = %s", cid) == 0


def test_concurrent_branch_moves_wait_for_each_other_and_lose_nothing(pg):
    with app_on(pg, OWNER) as a, app_on(pg, OWNER) as b:
        cid, (u1, a1, u2, a2) = conversation(a, "one", "two", "three", "four")
        edited = rpc(a, "SELECT (memory.edit_message(%s, 'three, again')).id", u2)
        every = {u1, a1, u2, a2, edited}

        def all_ids():
            live = {r[0] for r in active(a, cid)}
            stored = {r[0] for r in a.execute("SELECT id FROM memory.branch_messages WHERE conversation_id = %s", (cid,))}
            assert not live & stored
            return live | stored

        a.execute("BEGIN")
        a.execute("SELECT memory.switch_branch(%s, %s)", (cid, a2))
        done = []
        # the other session switches back to the edited version meanwhile: it waits for the first
        # switch and reads the tree as that one left it
        worker = threading.Thread(target=lambda: done.append(
            rpc(b, "SELECT memory.switch_branch(%s, %s)", cid, edited)))
        worker.start()
        time.sleep(0.5)
        assert not done
        a.execute("COMMIT")
        worker.join(10)
        assert done, "the second switch never finished"
        assert done[0]["stored"] == 2 and done[0]["restored"] == 1
        assert [r[2] for r in active(a, cid)] == ["one", "two", "three, again"]
        assert all_ids() == every
