"""The authorization rule carried by the rows, on the Citus stage's two workers (Citus stage only).

`conversations`, `conversation_messages`, `conversation_members` and `conversation_summaries` are distributed by
conversation with the rule on the rows (sql/citus/rule_on_rows.sql): each row
names its owner, readers and editors, the policies compare them with the caller and nothing
else, and the caller reaches the workers signed (memory.pass_caller). Every call is made as an
application server does it — an ordinary login, memory.user_id, one transaction per call with the
caller passed, as PostgREST's db-pre-request does — and is judged on the workers' shards."""
import pytest
from psycopg import errors

from support.citus_layout import (
    CARRY_THE_RULE,
    DISTRIBUTED,
    NOTHING_LEFT,
    ROUTE_BY_CONVERSATION,
    RULE_ON_ROWS,
    apply,
    hang_on_the_coordinator,
    left_on_the_coordinator,
)
from support.pg import CITUS_WORKERS, PORT, as_guc_user, connect, new_user, set_node_secret
from support.pg import call_as as call

pytestmark = pytest.mark.skipif(not CITUS_WORKERS, reason="runs in the Citus stage, on its two workers")

SECRET = "a node secret for the rule on the rows, 32 characters"
AGENT = "00000000-0000-0000-0000-0000000000a1"
ALICE, BOB, CAROL, DAVE, MALLORY = (new_user() for _ in range(5))


@pytest.fixture(scope="module")
def layout(db):
    set_node_secret(SECRET, [PORT, *CITUS_WORKERS])
    with connect(db) as c:
        apply(c, ROUTE_BY_CONVERSATION, RULE_ON_ROWS)
    yield db
    set_node_secret(None, [PORT, *CITUS_WORKERS])


def one(db, user, query, *args):
    return call(db, user, query, *args)[0][0]


def rows_as_superuser(db, query, *args):
    with connect(db) as c:
        return c.execute(query, args).fetchall()


@pytest.fixture(scope="module")
def talk(layout):
    """ALICE's conversation of three messages, shared with BOB (viewer) and CAROL (editor)."""
    cid = one(layout, ALICE, "SELECT (memory.create_conversation(%s, 'a talk')).id", AGENT)
    for i, role in enumerate(("user", "assistant", "user"), 1):
        one(layout, ALICE, "SELECT (memory.add_message(%s, %s, %s)).seq", cid, role, f"line {i} about rivers")
    one(layout, ALICE, "SELECT (memory.share_conversation(%s, %s, 'viewer')).role", cid, BOB)
    one(layout, ALICE, "SELECT (memory.share_conversation(%s, %s, 'editor')).role", cid, CAROL)
    return cid


def rule_on_messages(db, cid):
    return rows_as_superuser(db, """SELECT DISTINCT owner, readers, editors FROM memory.conversation_messages
                                     WHERE conversation_id = %s""", cid)


def test_every_row_carries_the_conversations_rule(layout, talk):
    readers = sorted([BOB, CAROL])
    assert rows_as_superuser(layout, "SELECT user_id::text, readers::text[], editors::text[] FROM memory.conversations WHERE id = %s",
                             talk) == [(ALICE, readers, [CAROL])]
    assert [(str(o), [str(r) for r in rs], [str(e) for e in es]) for o, rs, es in rule_on_messages(layout, talk)] == \
        [(ALICE, readers, [CAROL])]
    # and the conversation, its messages and its members are on one worker: the rewrite stays local
    placed = rows_as_superuser(layout, """SELECT count(DISTINCT p.groupid) FROM unnest(ARRAY['memory.conversations',
                                              'memory.conversation_messages', 'memory.conversation_members']::regclass[]) t
                                            JOIN pg_dist_placement p ON p.shardid = get_shard_id_for_distribution_column(t, %s::uuid)""",
                               talk)
    assert placed == [(1,)]


def test_each_user_lists_what_the_rule_lets_it_read(layout, talk):
    """list_conversations on the layout: the owner lists its conversation, each member the one
    shared with it, by its role, and a stranger nothing; the columns are the conversation's own,
    without the layout's lists."""
    listed = """SELECT id, user_id::text, title, access FROM memory.list_conversations(%s) WHERE id = %s"""
    for user, access in ((ALICE, "owner"), (BOB, "viewer"), (CAROL, "editor")):
        assert call(layout, user, listed, AGENT, talk) == [(talk, ALICE, "a talk", access)], user
    assert call(layout, MALLORY, "SELECT count(*) FROM memory.list_conversations()") == [(0,)]
    assert call(layout, BOB, "SELECT count(*) FROM memory.list_conversations(shared => false)") == [(0,)]
    row = call(layout, ALICE, "SELECT to_jsonb(l) FROM memory.list_conversations() l WHERE l.id = %s", talk)[0][0]
    assert "readers" not in row and row["message_count"] >= 3


def test_what_the_layout_does_not_run_yet_is_refused_and_changes_nothing(layout, talk):
    """Branches, rewinds, forks and imports are not built for the layout: each call fails at once
    with feature_not_supported (0A000) and a message naming the function, and the conversation,
    its messages and the caller's list are as they were."""
    first = call(layout, ALICE, "SELECT id FROM memory.conversation_messages WHERE conversation_id = %s AND seq = 1", talk)[0][0]
    def state():
        return (call(layout, ALICE, "SELECT last_seq, message_count FROM memory.conversations WHERE id = %s", talk),
                call(layout, ALICE, "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", talk),
                call(layout, ALICE, "SELECT count(*) FROM memory.list_conversations()"))
    before = state()
    for name, query, args in (
            ("edit_message", "SELECT memory.edit_message(%s, 'edited')", (first,)),
            ("regenerate", "SELECT memory.regenerate(%s)", (first,)),
            ("switch_branch", "SELECT memory.switch_branch(%s, %s)", (talk, first)),
            ("list_branches", "SELECT memory.list_branches(%s)", (talk,)),
            ("message_siblings", "SELECT memory.message_siblings(%s)", (first,)),
            ("rewind_conversation", "SELECT memory.rewind_conversation(%s, 1)", (talk,)),
            ("fork_conversation", "SELECT memory.fork_conversation(%s)", (talk,)),
            ("import_conversation", "SELECT memory.import_conversation(memory.export_conversation(%s))", (talk,))):
        with pytest.raises(errors.FeatureNotSupported, match=f"memory.{name} is not available on the distributed layout"):
            call(layout, ALICE, query, *args)
    assert state() == before


def test_members_read_and_editors_write_on_the_workers(layout, talk):
    assert one(layout, BOB, "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", talk) >= 3
    window = one(layout, BOB, "SELECT memory.build_context(%s, 1000)", talk)
    assert [m["content"] for m in window["messages"]][:3] == ["line 1 about rivers", "line 2 about rivers", "line 3 about rivers"]
    before = one(layout, ALICE, "SELECT message_count FROM memory.conversations WHERE id = %s", talk)
    with pytest.raises(errors.InsufficientPrivilege, match="read-only"):
        call(layout, BOB, "SELECT memory.add_message(%s, 'user', 'a viewer writes')", talk)
    seq, author, owner = call(layout, CAROL, """SELECT m.seq, m.author_id, m.owner FROM memory.add_message(%s, 'user', 'carol adds a line') m""",
                              talk)[0]
    assert (seq, str(author), str(owner)) == (before + 1, CAROL, ALICE)
    assert one(layout, ALICE, "SELECT message_count FROM memory.conversations WHERE id = %s", talk) == before + 1
    hits = one(layout, BOB, "SELECT memory.search_messages('carol')")["results"]
    assert [(h["conversation_id"], h["seq"]) for h in hits] == [(str(talk), seq)]


def test_a_stranger_sees_nothing_and_writes_nothing(layout, talk):
    count_before = rows_as_superuser(layout, "SELECT count(*) FROM memory.conversation_messages")[0][0]
    assert one(layout, MALLORY, "SELECT count(*) FROM memory.conversation_messages") == 0
    assert one(layout, MALLORY, "SELECT count(*) FROM memory.conversations") == 0
    assert one(layout, MALLORY, "SELECT count(*) FROM memory.conversation_members") == 0
    assert one(layout, MALLORY, "SELECT memory.search_messages('rivers')")["results"] == []
    with pytest.raises(errors.NoDataFound):
        call(layout, MALLORY, "SELECT memory.build_context(%s, 1000)", talk)
    with pytest.raises(errors.NoDataFound):
        call(layout, MALLORY, "SELECT memory.add_message(%s, 'user', 'let me in')", talk)
    with pytest.raises(errors.NoDataFound):
        call(layout, MALLORY, """INSERT INTO memory.conversation_messages (conversation_id, role, content, owner, readers)
                                 VALUES (%s, 'user', 'by hand', %s, ARRAY[%s]::uuid[]) RETURNING id""", talk, MALLORY, MALLORY)
    with pytest.raises(errors.NoDataFound):
        call(layout, MALLORY, "SELECT memory.share_conversation(%s, %s, 'editor')", talk, MALLORY)
    assert call(layout, MALLORY, "UPDATE memory.conversations SET title = 'mine' WHERE id = %s RETURNING id", talk) == []
    assert rows_as_superuser(layout, "SELECT count(*) FROM memory.conversation_messages")[0][0] == count_before
    assert rows_as_superuser(layout, "SELECT title FROM memory.conversations WHERE id = %s", talk) == [("a talk",)]


def test_the_rule_on_a_row_is_not_written_by_hand(layout, talk):
    """Only sharing writes the lists: an owner cannot put someone on them, an editor can neither
    change them on a message nor insert one with lists of its own, a new conversation starts with
    none."""
    with pytest.raises(errors.InsufficientPrivilege, match="maintained by memory_ext"):
        call(layout, ALICE, "UPDATE memory.conversations SET readers = ARRAY[%s]::uuid[] WHERE id = %s", MALLORY, talk)
    with pytest.raises(errors.InsufficientPrivilege, match="maintained by memory_ext"):
        call(layout, ALICE, "INSERT INTO memory.conversations (agent_id, readers) VALUES (%s, ARRAY[%s]::uuid[])", AGENT, MALLORY)
    with pytest.raises(errors.InsufficientPrivilege, match="maintained by memory_ext"):
        call(layout, CAROL, "UPDATE memory.conversation_messages SET readers = ARRAY[%s]::uuid[] WHERE conversation_id = %s",
             MALLORY, talk)
    with pytest.raises(errors.InsufficientPrivilege, match="maintained by memory_ext"):
        call(layout, CAROL, "UPDATE memory.conversation_messages SET owner = %s WHERE conversation_id = %s", CAROL, talk)
    # what an editor may change of a message, it changes
    assert call(layout, CAROL, """UPDATE memory.conversation_messages SET metadata = '{"note": "edited"}'
                                   WHERE conversation_id = %s RETURNING id""", talk)
    # a row written with a rule of the writer's own gets its conversation's (the insert trigger)
    own = call(layout, CAROL, """INSERT INTO memory.conversation_messages (conversation_id, role, content, owner, readers, editors)
                                 VALUES (%s, 'user', 'by hand', %s, ARRAY[%s]::uuid[], ARRAY[%s]::uuid[])
                                 RETURNING owner, readers, editors""", talk, CAROL, MALLORY, MALLORY)
    assert [(str(o), sorted(map(str, r)), list(map(str, e))) for o, r, e in own] == [(ALICE, sorted([BOB, CAROL]), [CAROL])]
    assert [str(o) for o, _r, _e in rule_on_messages(layout, talk)] == [ALICE]
    assert one(layout, MALLORY, "SELECT count(*) FROM memory.conversation_messages") == 0
    assert one(layout, BOB, "SELECT count(*) FROM memory.conversation_messages WHERE metadata->>'note' = 'edited'") > 0


def summaries_of(db, cid):
    return [(str(o), sorted(map(str, r)), list(map(str, e)), content) for o, r, e, content in rows_as_superuser(
        db, "SELECT owner, readers, editors, content FROM memory.conversation_summaries WHERE conversation_id = %s ORDER BY id",
        cid)]


def test_summaries_carry_the_rule(layout, talk):
    """A summary takes its conversation's rule on its shard, whoever writes it: members read it and
    the window it opens, an editor writes one, a viewer and a stranger cannot."""
    insert = """INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model)
                VALUES (%s, 2, %s, 'by hand') RETURNING owner"""
    assert [str(o) for o, in call(layout, ALICE, insert, talk, "the first two lines, in short")] == [ALICE]
    # the editor's summary is the owner's, its own lists replaced
    assert call(layout, CAROL, """INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model,
                                                                         owner, readers)
                                  VALUES (%s, 2, 'carol sums up', 'by hand', %s, ARRAY[%s]::uuid[]) RETURNING id""",
                talk, CAROL, MALLORY)
    readers = sorted([BOB, CAROL])
    assert summaries_of(layout, talk) == [(ALICE, readers, [CAROL], "the first two lines, in short"),
                                          (ALICE, readers, [CAROL], "carol sums up")]
    assert one(layout, BOB, "SELECT count(*) FROM memory.conversation_summaries WHERE conversation_id = %s", talk) == 2
    window = one(layout, BOB, "SELECT memory.build_context(%s, 40)", talk)
    assert window["summary_included"] is True and window["messages"][0]["content"].endswith("carol sums up")
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        call(layout, BOB, insert, talk, "a viewer sums up")
    # the stranger's insert meets a conversation it cannot see (as on one server)
    with pytest.raises(errors.NoDataFound):
        call(layout, MALLORY, insert, talk, "a stranger sums up")
    assert one(layout, MALLORY, "SELECT count(*) FROM memory.conversation_summaries") == 0
    assert call(layout, CAROL, "DELETE FROM memory.conversation_summaries WHERE conversation_id = %s RETURNING id", talk) == []
    assert len(summaries_of(layout, talk)) == 2


def test_without_the_caller_passed_the_workers_show_nothing(layout, talk):
    with as_guc_user(layout, ALICE) as c:
        with c.transaction():
            assert c.execute("SELECT count(*) FROM memory.conversation_messages").fetchone()[0] == 0


def test_unsharing_and_leaving_take_the_rows_back(layout, talk):
    assert one(layout, ALICE, "SELECT memory.unshare_conversation(%s, %s)", talk, BOB) is True
    assert one(layout, BOB, "SELECT count(*) FROM memory.conversation_messages") == 0
    assert one(layout, CAROL, "SELECT memory.unshare_conversation(%s, %s)", talk, CAROL) is True
    with pytest.raises(errors.NoDataFound):
        call(layout, CAROL, "SELECT memory.add_message(%s, 'user', 'still here?')", talk)
    assert [(str(o), r, e) for o, r, e in rule_on_messages(layout, talk)] == [(ALICE, [], [])]
    assert {(o, tuple(r), tuple(e)) for o, r, e, _ in summaries_of(layout, talk)} == {(ALICE, (), ())}


def test_a_transfer_moves_the_owner_on_every_row(layout):
    cid = one(layout, ALICE, "SELECT (memory.create_conversation(%s, 'to give away')).id", AGENT)
    one(layout, ALICE, "SELECT (memory.add_message(%s, 'user', 'yours now')).seq", cid)
    call(layout, ALICE, "INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model) "
                        "VALUES (%s, 1, 'a gift', 'by hand') RETURNING id", cid)
    one(layout, ALICE, "SELECT memory.transfer_conversation(%s, %s)", cid, DAVE)
    assert one(layout, DAVE, "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", cid) == 0
    # the offer, on the conversation's shard: its sender and recipient see it, no one else
    offer = "SELECT conversation_id::text, from_user_id::text, to_user_id::text FROM memory.conversation_transfers"
    assert call(layout, DAVE, offer) == call(layout, ALICE, offer) == [(str(cid), ALICE, DAVE)]
    assert call(layout, MALLORY, offer) == []
    one(layout, DAVE, "SELECT memory.accept_transfer(%s)", cid)
    assert call(layout, DAVE, offer) == []
    assert one(layout, DAVE, "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", cid) == 1
    (owner, readers, editors), = rule_on_messages(layout, cid)
    assert str(owner) == DAVE
    assert summaries_of(layout, cid) == [(DAVE, [ALICE], [ALICE], "a gift")]
    # the former owner stays on as an editor (accept_transfer), and the rows say so
    assert ([str(r) for r in readers], [str(e) for e in editors]) == ([ALICE], [ALICE])
    assert one(layout, ALICE, "SELECT (memory.add_message(%s, 'user', 'and I still write')).seq", cid) == 2


ERIN, FRED = new_user(), new_user()
CLOCK_CALL = '[{"id": "call_1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}]'
# the daily figures computed from the stored messages, and as memory.message_days keeps them
TRUTH = """SELECT (m.created_at AT TIME ZONE 'UTC')::date, m.author_id::text, count(*), sum(m.token_count)::bigint,
                  sum(memory._tool_call_count(m.tool_calls))::bigint
             FROM memory.conversation_messages m WHERE m.conversation_id = %s GROUP BY 1, 2 ORDER BY 1, 2"""
KEPT = """SELECT day, author_id::text, messages, tokens, tool_calls FROM memory.message_days
           WHERE conversation_id = %s ORDER BY 1, 2"""


def test_deletes_keep_the_counters_and_the_daily_figures_on_the_shards(layout):
    """A delete runs memory_ext's statement trigger on the conversation's shard: the counters and
    the daily figures follow, and a deleted call takes its result with it. The worker's rollup
    moves the figures into the distributed rollup with the conversation's rule."""
    cid = one(layout, ERIN, "SELECT (memory.create_conversation(%s, 'tools')).id", AGENT)
    one(layout, ERIN, "SELECT (memory.add_message(%s, 'user', 'what time is it?')).seq", cid)
    one(layout, ERIN, "SELECT (memory.add_message(%s, 'assistant', '', tool_calls => %s::jsonb)).seq", cid, CLOCK_CALL)
    one(layout, ERIN, "SELECT (memory.add_message(%s, 'tool', '12:00', tool_call_id => 'call_1')).seq", cid)
    one(layout, ERIN, "SELECT (memory.add_message(%s, 'assistant', 'noon')).seq", cid)
    one(layout, ERIN, "SELECT (memory.share_conversation(%s, %s, 'viewer')).role", cid, FRED)
    with connect(layout) as su:  # the worker's rollup, as the worker runs it
        assert su.execute("SELECT memory._roll_up_message_days(100)").fetchone()[0] >= 1
    truth = rows_as_superuser(layout, TRUTH, cid)
    assert [r[2:] for r in truth] == [(4, sum(r[3] for r in truth), 1)]
    assert call(layout, ERIN, KEPT, cid) == truth == call(layout, FRED, KEPT, cid)
    assert call(layout, MALLORY, KEPT, cid) == []
    assert rows_as_superuser(layout, """SELECT owner::text, readers::text[] FROM memory.message_days_rollup WHERE conversation_id = %s
                                        UNION SELECT owner::text, readers::text[] FROM memory.message_days_marks
                                         WHERE conversation_id = %s""", cid, cid) == [(ERIN, [FRED])]

    # the owner deletes the call: its result goes with it, on the shard
    assert call(layout, ERIN, "DELETE FROM memory.conversation_messages WHERE conversation_id = %s AND seq = 2 RETURNING seq",
                cid) == [(2,)]
    assert call(layout, ERIN, "SELECT seq, role FROM memory.conversation_messages WHERE conversation_id = %s ORDER BY seq",
                cid) == [(1, "user"), (4, "assistant")]
    count, tokens = rows_as_superuser(layout, "SELECT count(*), sum(token_count) FROM memory.conversation_messages WHERE conversation_id = %s",
                                      cid)[0]
    assert call(layout, ERIN, "SELECT message_count, total_tokens FROM memory.conversations WHERE id = %s", cid) == [(count, tokens)]
    truth = rows_as_superuser(layout, TRUTH, cid)
    assert [r[2:] for r in truth] == [(2, tokens, 0)]
    assert call(layout, ERIN, KEPT, cid) == truth == call(layout, FRED, KEPT, cid)
    window = one(layout, FRED, "SELECT memory.build_context(%s, 1000)", cid)
    assert [m["role"] for m in window["messages"]] == ["user", "assistant"]


def coordinator_rows(db, cid):
    with connect(db) as su:
        return left_on_the_coordinator(su, cid)


def test_deleting_a_conversation_takes_the_coordinators_rows_about_it(layout):
    """memory.delete_conversation on the layout: a stranger's and a member's call delete nothing
    (false, every row kept), the owner's removes the conversation from its shards, and its jobs,
    stored branch messages and vectors from the coordinator, whose tables keep no foreign key into
    it; a fact learnt from it stays its user's and forgets it. Nobody's delete of a missing
    conversation does anything."""
    cid = one(layout, FRED, "SELECT (memory.create_conversation(%s, 'to delete')).id", AGENT)
    for i in range(2):
        one(layout, FRED, "SELECT (memory.add_message(%s, 'user', %s)).seq", cid, f"fred's line {i}")
    one(layout, FRED, "SELECT (memory.share_conversation(%s, %s, 'editor')).role", cid, DAVE)
    with connect(layout) as su:
        hang_on_the_coordinator(su, cid, DAVE)
    for user in (MALLORY, DAVE):
        assert one(layout, user, "SELECT memory.delete_conversation(%s)", cid) is False
    assert rows_as_superuser(layout, "SELECT message_count FROM memory.conversations WHERE id = %s", cid) == [(2,)]
    assert coordinator_rows(layout, cid) == {t: 1 for t in NOTHING_LEFT}

    assert one(layout, FRED, "SELECT memory.delete_conversation(%s)", cid) is True
    for table in DISTRIBUTED:
        column = "id" if table == "conversations" else "conversation_id"
        assert rows_as_superuser(layout, f"SELECT count(*) FROM memory.{table} WHERE {column} = %s", cid) == [(0,)], table
    assert coordinator_rows(layout, cid) == NOTHING_LEFT
    assert rows_as_superuser(layout, "SELECT count(*) FROM memory.facts WHERE user_id = %s AND content = 'likes rivers'",
                             DAVE) == [(1,)]
    assert one(layout, FRED, "SELECT memory.delete_conversation(%s)", cid) is False


def test_an_operator_forgets_what_a_plain_delete_left_on_the_coordinator(layout):
    """A plain DELETE of a conversation (PostgREST's DELETE, say) runs on its shard, and leaves the
    coordinator's rows about it: memory.forget_deleted_conversations(), for operators, finds and
    removes them, and leaves those of live conversations alone; a user may not call it."""
    gone, kept = (one(layout, FRED, "SELECT (memory.create_conversation(%s, %s)).id", AGENT, t) for t in ("gone", "kept"))
    for cid in (gone, kept):
        one(layout, FRED, "SELECT (memory.add_message(%s, 'user', 'a line')).seq", cid)
        with connect(layout) as su:
            hang_on_the_coordinator(su, cid, FRED)
    assert call(layout, FRED, "DELETE FROM memory.conversations WHERE id = %s RETURNING 1", gone) == [(1,)]
    assert coordinator_rows(layout, gone) == {t: 1 for t in NOTHING_LEFT}
    with pytest.raises(errors.InsufficientPrivilege):
        call(layout, FRED, "SELECT memory.forget_deleted_conversations()")
    with connect(layout) as su:
        assert su.execute("SELECT memory.forget_deleted_conversations()").fetchone()[0] >= 1
    assert coordinator_rows(layout, gone) == NOTHING_LEFT
    assert coordinator_rows(layout, kept) == {t: 1 for t in NOTHING_LEFT}


def test_erasure_reaches_every_shard(layout):
    """memory.erase_user on the layout: the user's conversations with everything on their shards,
    what it wrote in others' (their counters and figures follow), its memberships (the lists on the
    rows forget it), the transfer it offered, and its share links, which open nothing afterwards."""
    mine = one(layout, ERIN, "SELECT (memory.create_conversation(%s, 'to forget')).id", AGENT)
    for i in range(3):
        one(layout, ERIN, "SELECT (memory.add_message(%s, 'user', %s)).seq", mine, f"erin's line {i}")
    call(layout, ERIN, "INSERT INTO memory.conversation_summaries (conversation_id, covers_through_seq, content, model) "
                       "VALUES (%s, 2, 'erin in short', 'by hand') RETURNING id", mine)
    one(layout, ERIN, "SELECT (memory.share_conversation(%s, %s, 'viewer')).role", mine, FRED)
    token = one(layout, ERIN, "SELECT memory.create_share_link(%s)", mine)
    one(layout, ERIN, "SELECT memory.transfer_conversation(%s, %s)", mine, FRED)
    assert one(layout, MALLORY, "SELECT memory.get_shared_conversation(%s)", token)["messages"][0]["content"] == "erin's line 0"
    theirs = one(layout, FRED, "SELECT (memory.create_conversation(%s, 'fred and erin')).id", AGENT)
    one(layout, FRED, "SELECT (memory.add_message(%s, 'user', 'fred writes')).seq", theirs)
    one(layout, FRED, "SELECT (memory.share_conversation(%s, %s, 'editor')).role", theirs, ERIN)
    one(layout, ERIN, "SELECT (memory.add_message(%s, 'user', 'erin writes back')).seq", theirs)

    with connect(layout) as su:
        hang_on_the_coordinator(su, mine, FRED)
    with connect(layout) as su:
        erased = su.execute("SELECT memory.erase_user(%s)", (ERIN,)).fetchone()[0]
    assert {k: erased[k] for k in ("conversations", "conversation_messages", "authored_messages", "conversation_summaries",
                                   "share_links", "conversation_transfers")} == {
        "conversations": 2, "conversation_messages": 5, "authored_messages": 1, "conversation_summaries": 1, "share_links": 1,
        "conversation_transfers": 1}
    # (its two conversations: this one and the one of the test before)
    for table in DISTRIBUTED:
        column = "id" if table == "conversations" else "conversation_id"
        left = rows_as_superuser(layout, f"SELECT count(*) FROM memory.{table} WHERE {column} = %s", mine)[0][0]
        assert left == 0, table
    for table in CARRY_THE_RULE:
        assert rows_as_superuser(layout, f"SELECT count(*) FROM memory.{table} WHERE owner = %s", ERIN) == [(0,)], table
    assert coordinator_rows(layout, mine) == NOTHING_LEFT
    assert rows_as_superuser(layout, "SELECT count(*) FROM memory.conversations WHERE user_id = %s", ERIN) == [(0,)]
    assert rows_as_superuser(layout, """SELECT count(*) FROM memory.conversation_messages WHERE author_id = %s""", ERIN) == [(0,)]
    assert rows_as_superuser(layout, "SELECT count(*) FROM memory.conversation_members WHERE %s IN (user_id, owner_id)",
                             ERIN) == [(0,)]
    # FRED's conversation: its own message left, its counters, figures and lists without ERIN
    assert call(layout, FRED, "SELECT message_count, readers::text[], editors::text[] FROM memory.conversations WHERE id = %s",
                theirs) == [(1, [], [])]
    assert [(str(o), r, e) for o, r, e in rule_on_messages(layout, theirs)] == [(FRED, [], [])]
    assert call(layout, FRED, KEPT, theirs) == rows_as_superuser(layout, TRUTH, theirs)
    with pytest.raises(errors.NoDataFound):
        call(layout, MALLORY, "SELECT memory.get_shared_conversation(%s)", token)
