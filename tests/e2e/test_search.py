"""search_messages end to end: another user's messages never appear (results, counts, snippets)
however the query is written, through PostgREST's identity; hostile queries give clear errors or
are handled; pages cover every hit once; the search index follows import, fork and rewind, and
an existing database gets it on upgrade (tests/e2e/test_upgrade.py)."""
import json

import psycopg
import pytest

from support.pg import as_guc_user, as_jwt_user, connect, new_user, rpc, search

AGENT = "a0000000-0000-0000-0000-00000000beef"


@pytest.fixture(scope="module")
def two_users(db):
    alice, bob = new_user(), new_user()
    convs = {}
    for uid, secret in ((alice, "alpha"), (bob, "bravo")):
        with as_guc_user(db, uid) as c:
            cid = rpc(c, "SELECT (memory.create_conversation(%s, %s)).id", AGENT, f"{secret} notes")
            msgs = [{"role": "user", "content": f"shared words and {secret} secret number {i}"} for i in range(60)]
            c.execute("SELECT memory.import_conversation(%s)", (json.dumps(msgs),))
            c.execute("SELECT memory.add_message(%s, 'user', %s)", (cid, f"the {secret} plan for the shared launch"))
            convs[uid] = cid
    return alice, bob, convs


def test_other_users_messages_never_appear(db, two_users):
    alice, bob, convs = two_users
    for query in ("shared", "bravo", "shared -alpha", '"shared words"', "bravo or alpha", "secret launch", "conv" + str(convs[bob]).replace("-", "")):
        with as_jwt_user(db, alice) as c:
            page = search(c, query, limit=100)
            text = json.dumps(page)
            assert "bravo" not in text, query
            assert all(r["conversation_id"] != str(convs[bob]) for r in page["results"]), query
    with as_jwt_user(db, alice) as c:
        assert len(search(c, "shared", limit=100)["results"]) == 61
        assert search(c, "shared", conversation_id=convs[bob])["results"] == []
    with as_jwt_user(db, None) as anon:  # no identity: nothing at all
        assert search(anon, "shared")["results"] == []


def test_pages_cover_every_hit_once(db, two_users):
    alice, _, _ = two_users
    seen, cursor = [], None
    with as_guc_user(db, alice) as c:
        while True:
            page = search(c, "secret", limit=7, **({"cursor": cursor} if cursor else {}))
            seen += [r["message_id"] for r in page["results"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert len(seen) == 60 and len(set(seen)) == 60


@pytest.mark.parametrize("query", ["a & b | !c", "((((", "'", "\\", "NULL", "🎉 emoji", "日本語", "x" * 1000, "-", '"', "or or or"])
def test_hostile_queries_are_handled(db, two_users, query):
    alice, _, _ = two_users
    with as_guc_user(db, alice) as c:
        page = search(c, query)
        assert isinstance(page["results"], list) and "next_cursor" in page


def test_bad_arguments_change_nothing(db, two_users):
    alice, _, _ = two_users
    for kw, state in [({"q": "x" * 1001}, "22023"), ({"q": None}, "22004"), ({"limit": 101}, "22023"),
                      ({"role": "robot"}, "22023"), ({"cursor": "1.5/not-a-uuid"}, "22023")]:
        q = kw.pop("q", "x")
        with as_guc_user(db, alice) as c:
            with pytest.raises(psycopg.Error) as e:
                search(c, q, **kw)
            assert e.value.sqlstate == state, kw


def test_index_follows_fork_rewind_and_snippets_are_text(db):
    uid = new_user()
    with as_guc_user(db, uid) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT)
        c.execute("SELECT memory.add_message(%s, 'user', %s)", (cid, "<script>alert('pwned')</script> quokka facts"))
        c.execute("SELECT memory.add_message(%s, 'assistant', 'later words about the quokka')", (cid,))
        fork = rpc(c, "SELECT memory.fork_conversation(%s, 1)", cid)
        hits = search(c, "quokka")["results"]
        assert sorted((h["conversation_id"], h["seq"]) for h in hits) == sorted([(str(cid), 1), (str(cid), 2), (str(fork), 1)])
        # plain text: the parser drops markup, and the app escapes what is left before rendering
        assert all("**quokka**" in h["snippet"] and "<script>" not in h["snippet"] for h in hits)
        c.execute("SELECT memory.rewind_conversation(%s, 1)", (cid,))
        assert sorted(h["seq"] for h in search(c, "later")["results"]) == []
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("UPDATE memory.conversation_messages SET search_vector = 'x' WHERE conversation_id = %s", (cid,))


def test_search_off_stores_no_words_and_refuses_queries(db):
    """memory.search_config = 'off' (superuser): appends and imports store no search words,
    search_messages fails with 55000, and reindex_search empties the stored ones."""
    with connect(db) as su:
        su.execute("SELECT set_config('memory.user_id', %s, false)", (new_user(),))
        cid = rpc(su, "SELECT (memory.create_conversation(gen_random_uuid())).id")
        su.execute("SELECT memory.add_message(%s, 'user', 'indexed quokka')", (cid,))
        su.execute("SET memory.search_config = 'off'")
        su.execute("SELECT memory.add_message(%s, 'user', 'not indexed wombat')", (cid,))
        imported = rpc(su, "SELECT memory.import_conversation('[{\"role\": \"user\", \"content\": \"imported numbat\"}]')")
        assert su.execute("""SELECT array_agg(search_vector IS NULL ORDER BY seq) FROM memory.conversation_messages
                              WHERE conversation_id = %s""", (cid,)).fetchone()[0] == [False, True]
        assert rpc(su, "SELECT bool_and(search_vector IS NULL) FROM memory.conversation_messages WHERE conversation_id = %s",
                   imported) is True
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            su.execute("SELECT memory.search_messages('quokka')")
        su.execute("SELECT memory.reindex_search()")
        assert rpc(su, "SELECT count(*) FROM memory.conversation_messages WHERE search_vector IS NOT NULL") == 0
        su.execute("RESET memory.search_config")
        su.execute("SELECT memory.reindex_search()")
        hits = rpc(su, "SELECT memory.search_messages('wombat OR numbat OR quokka', \"limit\" => 100)")["results"]
        assert sorted(h["seq"] for h in hits if h["conversation_id"] in (str(cid), str(imported))) == [1, 1, 2]


def test_forged_conversation_tags_change_nothing_for_the_victim(db):
    """Each message is indexed with a lexeme naming its conversation, through which a caller's
    search is scoped. An attacker who writes that name as text ("conv" and the hex of the victim's
    conversation, 300 times next to the victim's word) must not reach into the victim's scope: the
    victim's results are exactly what they are without the forgeries (in 0.2.0 they pushed the
    victim's own hits off the first pages), and the attacker's own search of the forged tag finds
    only the attacker's text."""
    victim, attacker = new_user(), new_user()
    with as_guc_user(db, victim) as c:
        cid = rpc(c, "SELECT (memory.create_conversation(%s, 'pay')).id", AGENT)
        for i in range(5):
            c.execute("SELECT memory.add_message(%s, 'user', %s)", (cid, f"the payroll run number {i} is due on friday afternoon"))
        before = search(c, "payroll", limit=20)
    assert len(before["results"]) == 5
    tag = "conv" + str(cid).replace("-", "")
    with as_guc_user(db, attacker) as c:
        c.execute("SELECT memory.import_conversation(%s)",
                  (json.dumps([{"role": "user", "content": f"{tag} payroll"} for _ in range(300)]),))
        own = search(c, tag, limit=100)
        assert own["results"] and {r["conversation_id"] for r in own["results"]} != {str(cid)}
    with as_guc_user(db, victim) as c:
        after = search(c, "payroll", limit=20)
    assert after == before
    with as_guc_user(db, attacker) as c:
        # the helper called directly with the victim's conversation finds nothing either
        rows = c.execute("SELECT count(*) FROM memory._search_hits(%s::tsquery, %s, NULL, NULL, NULL, NULL, NULL, NULL, 20, NULL, NULL)",
                         (f"payroll & {tag}", cid)).fetchone()[0]
        assert rows == 0
