"""Sharing, share links, archive and erasure end to end, as PostgREST and an application server
call them: what viewers and editors may and may not do, a removed member losing access at its
next statement, share links for the anon role (expiry, revocation, wrong tokens, up_to_seq), and
erase_user removing one user's rows from every memory table and nothing of anyone else's."""
import json
import time

import pytest
from psycopg import errors

from support.pg import as_guc_user, as_jwt_user, connect, new_user, rpc

AGENT = "a0000000-0000-0000-0000-00000000517e"
MODES = pytest.mark.parametrize("mode", [as_guc_user, as_jwt_user], ids=["login", "postgrest"])


def conversation(owner, n=4, title="shared"):
    """A conversation of `owner` with n messages (a tool call and its result among them)."""
    with as_guc_user(DB, owner) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s, %s)).id", AGENT, title))
        c.execute("SELECT memory.add_message(%s, 'user', 'what is the weather in Paris')", (cid,))
        c.execute("SELECT memory.add_message(%s, 'assistant', '', %s)", (cid, json.dumps(
            [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}])))
        c.execute("SELECT memory.add_message(%s, 'tool', 'sunny, 21 degrees', tool_call_id => 'call_1')", (cid,))
        for i in range(n - 3):
            c.execute("SELECT memory.add_message(%s, 'assistant', %s)", (cid, f"It is sunny in Paris ({i})."))
    return cid


DB = "e2e_" + __name__.split(".")[-1]  # the database the `db` fixture makes for this module


@pytest.fixture(autouse=True)
def _db(db):
    assert db == DB


def share(owner, cid, member, role):
    with as_guc_user(DB, owner) as c:
        return c.execute("SELECT * FROM memory.share_conversation(%s, %s, %s)", (cid, member, role)).fetchone()


@MODES
def test_a_viewer_reads_but_cannot_write_or_manage(mode):
    owner, viewer = new_user(), new_user()
    cid = conversation(owner)
    share(owner, cid, viewer, "viewer")
    with mode(DB, viewer) as c:
        assert rpc(c, "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", cid) == 4
        assert len(rpc(c, "SELECT memory.build_context(%s, 4000)", cid)["messages"]) == 4
        assert rpc(c, "SELECT memory.export_conversation(%s)", cid)["conversation"]["message_count"] == 4
        hits = rpc(c, "SELECT memory.search_messages('paris')")["results"]
        assert {h["conversation_id"] for h in hits} == {cid}
        rows = c.execute("SELECT id, access FROM memory.list_conversations()").fetchall()
        assert [(str(r[0]), r[1]) for r in rows] == [(cid, "viewer")]
        assert c.execute("SELECT user_id::text, role FROM memory.list_members(%s)", (cid,)).fetchall() == [
            (owner, "owner"), (viewer, "viewer")]
        # a fork is the viewer's own copy
        fork = rpc(c, "SELECT memory.fork_conversation(%s)", cid)
        assert rpc(c, "SELECT user_id::text FROM memory.conversations WHERE id = %s", fork) == viewer
        for sql, err in [
            ("SELECT memory.add_message(%s, 'user', 'let me in')", errors.InsufficientPrivilege),
            ("SELECT memory.request_summary(%s)", errors.InsufficientPrivilege),
            ("SELECT memory.request_reply(%s)", errors.InsufficientPrivilege),
            ("SELECT memory.rewind_conversation(%s, 1)", errors.InsufficientPrivilege),
            ("SELECT memory.archive_conversation(%s)", errors.InsufficientPrivilege),
            ("SELECT memory.create_share_link(%s)", errors.InsufficientPrivilege),
            ("SELECT memory.share_conversation(%s, gen_random_uuid(), 'editor')", errors.InsufficientPrivilege),
        ]:
            with pytest.raises(err):
                with c.transaction():
                    c.execute(sql, (cid,))
        # plain SQL: RLS lets the viewer change nothing
        assert c.execute("UPDATE memory.conversations SET title = 'mine now' WHERE id = %s", (cid,)).rowcount == 0
        assert c.execute("DELETE FROM memory.conversation_messages WHERE conversation_id = %s", (cid,)).rowcount == 0
        assert c.execute("UPDATE memory.conversation_messages SET metadata = '{}' WHERE conversation_id = %s", (cid,)).rowcount == 0
        assert rpc(c, "SELECT memory.delete_conversation(%s)", cid) is False
    with connect(DB) as su:
        assert su.execute("SELECT message_count, title FROM memory.conversations WHERE id = %s", (cid,)).fetchone() == (4, "shared")
        assert su.execute("SELECT count(*) FROM memory.jobs WHERE conversation_id = %s", (cid,)).fetchone()[0] == 0


@MODES
def test_an_editor_appends_but_cannot_delete_rewind_or_share(mode):
    owner, editor = new_user(), new_user()
    cid = conversation(owner)
    share(owner, cid, editor, "editor")
    with mode(DB, editor) as c:
        assert rpc(c, "SELECT (memory.add_message(%s, 'user', 'and tomorrow?')).seq", cid) == 5
        c.execute("INSERT INTO memory.conversation_messages (conversation_id, role, content) VALUES (%s, 'assistant', 'rain')", (cid,))
        assert c.execute("UPDATE memory.conversation_messages SET metadata = '{\"seen\": true}' WHERE conversation_id = %s AND seq = 6",
                         (cid,)).rowcount == 1
        assert rpc(c, "SELECT memory.request_summary(%s)", cid) is not None
        for sql in ("SELECT memory.rewind_conversation(%s, 2)", "SELECT memory.share_conversation(%s, gen_random_uuid())",
                    "SELECT memory.unshare_conversation(%s, gen_random_uuid())", "SELECT memory.archive_conversation(%s)"):
            with pytest.raises(errors.InsufficientPrivilege):
                with c.transaction():
                    c.execute(sql, (cid,))
        assert rpc(c, "SELECT memory.delete_conversation(%s)", cid) is False
        assert c.execute("DELETE FROM memory.conversation_messages WHERE conversation_id = %s", (cid,)).rowcount == 0
        assert c.execute("DELETE FROM memory.conversation_summaries WHERE conversation_id = %s", (cid,)).rowcount == 0
        assert c.execute("UPDATE memory.conversations SET agent_id = gen_random_uuid() WHERE id = %s", (cid,)).rowcount == 0
    with connect(DB) as su:
        assert su.execute("SELECT message_count, last_seq, agent_id::text FROM memory.conversations WHERE id = %s",
                          (cid,)).fetchone() == (6, 6, AGENT)


def test_a_removed_member_loses_access_at_its_next_statement():
    owner, member = new_user(), new_user()
    cid = conversation(owner)
    share(owner, cid, member, "editor")
    with as_guc_user(DB, member) as c:
        assert rpc(c, "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", cid) == 4
        with as_guc_user(DB, owner) as o:
            assert rpc(o, "SELECT memory.unshare_conversation(%s, %s)", cid, member) is True
        # the same session, the very next statements
        assert rpc(c, "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", cid) == 0
        assert c.execute("SELECT * FROM memory.list_conversations()").fetchall() == []
        assert rpc(c, "SELECT memory.search_messages('paris')")["results"] == []
        assert rpc(c, "SELECT memory.can_read(%s)", cid) is False
        for sql in ("SELECT memory.build_context(%s, 1000)", "SELECT memory.export_conversation(%s)",
                    "SELECT memory.add_message(%s, 'user', 'still here?')", "SELECT memory.list_members(%s)"):
            with pytest.raises(errors.NoDataFound):
                with c.transaction():
                    c.execute(sql, (cid,))


def test_a_member_may_leave_and_roles_change():
    owner, member = new_user(), new_user()
    cid = conversation(owner)
    assert share(owner, cid, member, "viewer")[2] == "viewer"
    assert share(owner, cid, member, "editor")[2] == "editor"
    with as_guc_user(DB, member) as c:
        assert c.execute("SELECT access FROM memory.list_conversations()").fetchall() == [("editor",)]
        assert rpc(c, "SELECT memory.unshare_conversation(%s, %s)", cid, member) is True
        assert rpc(c, "SELECT memory.can_read(%s)", cid) is False
    with as_guc_user(DB, owner) as c:
        for args, err in [((cid, owner, "viewer"), errors.InvalidParameterValue),   # the owner is not a member
                          ((cid, member, "admin"), errors.InvalidParameterValue),
                          ((cid, None, "viewer"), errors.NullValueNotAllowed),
                          ((new_user(), member, "viewer"), errors.NoDataFound)]:
            with pytest.raises(err):
                c.execute("SELECT memory.share_conversation(%s, %s, %s)", args)
        assert c.execute("SELECT count(*) FROM memory.conversation_members").fetchone()[0] == 0


@MODES
def test_transfer_of_ownership(mode):
    """Only the owner offers a transfer; nothing changes until the recipient accepts. Then the new
    owner manages at once, the previous owner stays an editor, a member who receives it stops
    being a member, other members and links stay."""
    owner, heir, viewer, outsider = new_user(), new_user(), new_user(), new_user()
    cid = conversation(owner)
    share(owner, cid, heir, "viewer")
    share(owner, cid, viewer, "viewer")
    with as_guc_user(DB, owner) as c:
        c.execute("SELECT memory.create_share_link(%s)", (cid,))
    for who, err in ((viewer, errors.InsufficientPrivilege), (outsider, errors.NoDataFound)):
        with mode(DB, who) as c:
            with pytest.raises(err):
                c.execute("SELECT memory.transfer_conversation(%s, %s)", (cid, who))
    for args, err in (((cid, owner), errors.InvalidParameterValue),
                      ((cid, "00000000-0000-0000-0000-000000000000"), errors.InvalidParameterValue),
                      ((cid, None), errors.NullValueNotAllowed)):
        with mode(DB, owner) as c:
            with pytest.raises(err):
                c.execute("SELECT memory.transfer_conversation(%s, %s)", args)
    with mode(DB, owner) as c:
        row = c.execute("SELECT user_id, message_count FROM memory.transfer_conversation(%s, %s)", (cid, heir)).fetchone()
        # an offer: the conversation is still the owner's
        assert (str(row[0]), row[1]) == (owner, 4)
        assert c.execute("SELECT access FROM memory.list_conversations()").fetchall() == [("owner",)]
    # only the recipient accepts
    for who in (owner, viewer, outsider):
        with mode(DB, who) as c:
            with pytest.raises(errors.NoDataFound):
                c.execute("SELECT memory.accept_transfer(%s)", (cid,))
    with mode(DB, heir) as c:
        offers = c.execute("SELECT conversation_id, from_user_id, to_user_id, title, message_count, members"
                           " FROM memory.list_transfer_offers()").fetchall()
        assert [(str(o[0]), str(o[1]), str(o[2]), o[3], o[4]) for o in offers] == [(cid, owner, heir, "shared", 4)]
        assert {(m["user_id"], m["role"]) for m in offers[0][5]} == {(heir, "viewer"), (viewer, "viewer")}
        row = c.execute("SELECT user_id FROM memory.accept_transfer(%s)", (cid,)).fetchone()
        assert str(row[0]) == heir
        assert c.execute("SELECT count(*) FROM memory.list_transfer_offers()").fetchone() == (0,)
    with mode(DB, owner) as c:
        # the previous owner is now an editor: it appends, but may no longer manage
        assert c.execute("SELECT access FROM memory.list_conversations()").fetchall() == [("editor",)]
        c.execute("SELECT memory.add_message(%s, 'user', 'still here')", (cid,))
    with mode(DB, owner) as c:
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("SELECT memory.share_conversation(%s, %s, 'viewer')", (cid, outsider))
    with mode(DB, heir) as c:
        assert c.execute("SELECT access FROM memory.list_conversations()").fetchall() == [("owner",)]
        members = {(str(r[0]), r[1]) for r in c.execute("SELECT user_id, role FROM memory.list_members(%s)", (cid,))}
        assert members == {(heir, "owner"), (owner, "editor"), (viewer, "viewer")}
        assert c.execute("SELECT count(*) FROM memory.list_share_links(%s)", (cid,)).fetchone() == (1,)
        # the new owner finds its messages in search (their owner lexeme was rewritten)
        hits = rpc(c, "SELECT memory.search_messages('paris')")["results"]
        assert {h["conversation_id"] for h in hits} == {cid}
        assert c.execute("SELECT memory.unshare_conversation(%s, %s)", (cid, owner)).fetchone() == (True,)
    with mode(DB, owner) as c:
        assert c.execute("SELECT memory.can_read(%s)", (cid,)).fetchone() == (False,)
    with as_guc_user(DB, viewer) as c:
        assert c.execute("SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s",
                         (cid,)).fetchone() == (5,)


def test_members_table_shows_only_ones_own_memberships():
    owner, a, b, outsider = new_user(), new_user(), new_user(), new_user()
    cid = conversation(owner)
    share(owner, cid, a, "viewer")
    share(owner, cid, b, "editor")
    for who, expect in ((owner, {a, b}), (a, {a}), (b, {b}), (outsider, set())):
        with as_jwt_user(DB, who) as c:
            assert {str(r[0]) for r in c.execute("SELECT user_id FROM memory.conversation_members")} == expect
    with as_jwt_user(DB, a) as c:
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("INSERT INTO memory.conversation_members VALUES (%s, %s, 'editor', %s)", (cid, a, owner))
    with as_jwt_user(DB, None, role="anon") as c:
        assert c.execute("SELECT count(*) FROM memory.conversation_members").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM memory.conversations").fetchone()[0] == 0


def test_list_conversations_owned_shared_and_archived():
    me, other = new_user(), new_user()
    mine = conversation(me, title="mine")
    theirs = conversation(other, title="theirs")
    share(other, theirs, me, "viewer")
    with as_guc_user(DB, me) as c:
        def listed(**kw):
            args = ", ".join(f'"{k}" => %({k})s' for k in kw)
            return [(r[0], r[1]) for r in c.execute(f"SELECT title, access FROM memory.list_conversations({args})", kw)]
        assert sorted(listed()) == [("mine", "owner"), ("theirs", "viewer")]
        assert listed(shared=False) == [("mine", "owner")]
        assert listed(shared=True) == [("theirs", "viewer")]
        assert listed(limit=1) == [listed()[0]]
        archived = rpc(c, "SELECT (memory.archive_conversation(%s)).archived_at", mine)
        assert archived is not None
        assert listed() == [("theirs", "viewer")]
        assert listed(archived=True) == [("mine", "owner")]
        assert sorted(listed(archived=None)) == [("mine", "owner"), ("theirs", "viewer")]
        # archived: readable, but no new messages (55000), until unarchived
        assert len(rpc(c, "SELECT memory.build_context(%s, 4000)", mine)["messages"]) == 4
        with pytest.raises(errors.ObjectNotInPrerequisiteState):
            c.execute("SELECT memory.add_message(%s, 'user', 'hello?')", (mine,))
        assert rpc(c, "SELECT (memory.unarchive_conversation(%s)).archived_at", mine) is None
        assert rpc(c, "SELECT (memory.add_message(%s, 'user', 'hello again')).seq", mine) == 5


@MODES
def test_share_links_for_anyone_holding_the_token(mode):
    owner, outsider = new_user(), new_user()
    cid = conversation(owner, n=6)
    with mode(DB, owner) as c:
        full = rpc(c, "SELECT memory.create_share_link(%s)", cid)
        upto3 = rpc(c, "SELECT memory.create_share_link(%s, up_to_seq => 3)", cid)
        soon = rpc(c, "SELECT memory.create_share_link(%s, now() + interval '2 seconds')", cid)
        revoked = rpc(c, "SELECT memory.create_share_link(%s)", cid)
        links = c.execute("SELECT id, up_to_seq FROM memory.list_share_links(%s)", (cid,)).fetchall()
        assert len(links) == 4 and sorted(r[1] for r in links) == [3, 6, 6, 6]
        revoked_id = rpc(c, "SELECT id FROM memory.share_links WHERE token_hash = sha256(convert_to(%s, 'UTF8'))", revoked)
        assert rpc(c, "SELECT memory.revoke_share_link(%s)", revoked_id) is True
        # the table holds hashes, never a token
        stored = [bytes(r[0]) for r in c.execute("SELECT token_hash FROM memory.share_links")]
        assert all(len(h) == 32 for h in stored) and not any(t.encode() in h for t in (full, upto3) for h in stored)
        c.execute("SELECT memory.add_message(%s, 'user', 'after the links were made')", (cid,))
    assert len({full, upto3, soon, revoked}) == 4 and all(len(t) == 4 + 64 for t in (full, upto3, soon))
    with as_jwt_user(DB, None, role="anon") as c:
        doc = rpc(c, "SELECT memory.get_shared_conversation(%s)", full)
        assert [m["seq"] for m in doc["messages"]] == [1, 2, 3, 4, 5, 6]        # fixed at creation
        assert doc["conversation"]["message_count"] == 6
        part = rpc(c, "SELECT memory.get_shared_conversation(%s)", upto3)
        assert [m["role"] for m in part["messages"]] == ["user", "assistant", "tool"]
        assert part["conversation"]["total_tokens"] == sum(m["token_count"] for m in part["messages"])
        assert len(rpc(c, "SELECT memory.get_shared_conversation(%s)", soon)["messages"]) == 6
        # anon reads nothing else
        assert c.execute("SELECT count(*) FROM memory.conversation_messages").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM memory.share_links").fetchone()[0] == 0
    time.sleep(2.2)
    bad = [revoked, soon, full[:-1] + ("0" if full[-1] != "0" else "1"), "", "x" * 100000, None, "mxs_" + "0" * 64]
    messages = set()
    with as_jwt_user(DB, None, role="anon") as c:
        for token in bad:
            with pytest.raises(errors.NoDataFound) as e:
                with c.transaction():
                    c.execute("SELECT memory.get_shared_conversation(%s)", (token,))
            messages.add(e.value.diag.message_primary)
    assert messages == {"share link is not valid"}
    # only the owner lists and revokes
    with as_guc_user(DB, outsider) as c:
        assert rpc(c, "SELECT memory.revoke_share_link(%s)", links[0][0]) is False
        with pytest.raises(errors.NoDataFound):
            c.execute("SELECT * FROM memory.list_share_links(%s)", (cid,))
    # revoking twice deletes the link; deleting the conversation takes its links
    with as_guc_user(DB, owner) as c:
        assert rpc(c, "SELECT memory.revoke_share_link(%s)", revoked_id) is True
        assert c.execute("SELECT count(*) FROM memory.list_share_links(%s)", (cid,)).fetchone()[0] == 3
        with pytest.raises(errors.InvalidParameterValue):
            c.execute("SELECT memory.create_share_link(%s, up_to_seq => 99)", (cid,))
        with pytest.raises(errors.InvalidParameterValue):
            c.execute("SELECT memory.create_share_link(%s, now() - interval '1 day')", (cid,))
        assert rpc(c, "SELECT memory.delete_conversation(%s)", cid) is True
    with connect(DB) as su:
        assert su.execute("SELECT count(*) FROM memory.share_links WHERE conversation_id = %s", (cid,)).fetchone()[0] == 0


def user_rows(c, uid):
    """Every row of every memory table that names uid, table by table."""
    tables = [r[0] for r in c.execute("""SELECT c.relname FROM pg_class c
                                          WHERE c.relnamespace = 'memory'::regnamespace AND c.relkind = 'r' ORDER BY 1""")]
    out = {}
    for t in tables:
        # any column holding the user's id, or a row of one of the user's conversations
        out[t] = c.execute(f"""SELECT count(*) FROM memory.{t} x
                               WHERE to_jsonb(x)::text LIKE '%%' || %s || '%%'
                                  OR (to_jsonb(x) ? 'conversation_id' AND (to_jsonb(x)->>'conversation_id')::uuid IN
                                      (SELECT id FROM memory.conversations WHERE user_id = %s))""", (uid, uid)).fetchone()[0]
    return out


def test_erase_user_removes_everything_of_one_user_and_nothing_else(db):
    victim, keeper = new_user(), new_user()
    mine = conversation(victim, n=8)
    kept = conversation(keeper, n=5)
    share(victim, mine, keeper, "editor")
    share(keeper, kept, victim, "editor")
    with as_guc_user(DB, victim) as c:
        c.execute("SELECT memory.create_agent('helper', 'be brief')")
        c.execute("SELECT memory.request_summary(%s)", (mine,))
        c.execute("SELECT memory.add_message(%s, 'user', 'a message in the keeper''s conversation')", (kept,))
        c.execute("SELECT memory.save_as_template(%s, 'tpl')", (mine,))
        c.execute("SELECT memory.create_share_link(%s)", (mine,))
    with connect(DB) as su:
        before_victim = user_rows(su, victim)
        before_keeper = user_rows(su, keeper)
        keeper_messages = su.execute("SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s",
                                     (kept,)).fetchone()[0]
        total = su.execute("SELECT count(*) FROM memory.conversation_messages").fetchone()[0]
    assert before_victim["conversations"] == 1 and before_victim["conversation_members"] == 2
    # not for ordinary callers, nor for the user itself
    for mode in (as_guc_user, as_jwt_user):
        with mode(DB, victim) as c:
            with pytest.raises(errors.InsufficientPrivilege):
                c.execute("SELECT memory.erase_user(%s)", (victim,))
    with connect(DB) as su:
        counts = rpc(su, "SELECT memory.erase_user(%s)", victim)
        assert counts["conversations"] == 1 and counts["conversation_messages"] == 8
        # what the victim wrote in the keeper's conversation goes too
        assert counts["authored_messages"] == 1
        assert counts["agents"] == 1 and counts["conversation_templates"] == 1 and counts["share_links"] == 1
        assert counts["conversation_members"] == 2 and counts["jobs"] == 1
        after = user_rows(su, victim)
        assert after == {t: 0 for t in after}, after
        # the keeper lost its membership in the erased conversation, nothing of its own
        after_keeper = user_rows(su, keeper)
        assert after_keeper["conversations"] == before_keeper["conversations"]
        assert su.execute("SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s",
                          (kept,)).fetchone()[0] == keeper_messages - 1
        assert su.execute("SELECT count(*) FROM memory.conversation_messages").fetchone()[0] == total - 9
        assert rpc(su, "SELECT memory.erase_user(%s)", victim) == {k: 0 for k in counts}


def test_an_expired_share_link_fails_inside_a_transaction_that_began_before_it_expired():
    """Expiry is checked against the clock, not the transaction's start: a reader cannot keep a
    link alive by opening a transaction before it expires."""
    owner = new_user()
    cid = conversation(owner)
    with as_guc_user(DB, owner) as c:
        token = rpc(c, "SELECT memory.create_share_link(%s, clock_timestamp() + interval '1 second')", cid)
    with connect(DB, "authenticator") as c:
        with c.transaction():
            c.execute("SET LOCAL ROLE anon")
            assert rpc(c, "SELECT memory.get_shared_conversation(%s)", token)["conversation"]["id"] == cid
            time.sleep(1.3)
            with pytest.raises(errors.NoDataFound):
                c.execute("SELECT memory.get_shared_conversation(%s)", (token,))
