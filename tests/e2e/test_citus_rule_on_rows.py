"""The authorization rule carried by the rows, on the Citus stage's two workers (Citus stage only).

`conversations`, `conversation_messages`, `conversation_members` and `conversation_summaries` are distributed by
conversation with the rule on the rows (tests/support/citus_layout.py RULE_ON_ROWS): each row
names its owner, readers and editors, the policies compare them with the caller and nothing
else, and the caller reaches the workers signed (memory.pass_caller). Every call is made as an
application server does it — an ordinary login, memory.user_id, one transaction per call with the
caller passed, as PostgREST's db-pre-request does — and is judged on the workers' shards."""
import pytest
from psycopg import errors

from support.citus_layout import DISTRIBUTE, DROP_POLICIES, DROP_WORKER_POLICIES, RULE_ON_ROWS, apply
from support.pg import CITUS_WORKERS, PORT, as_guc_user, call_passing_the_caller, connect, new_user, set_node_secret

pytestmark = pytest.mark.skipif(not CITUS_WORKERS, reason="runs in the Citus stage, on its two workers")

SECRET = "a node secret for the rule on the rows, 32 characters"
AGENT = "00000000-0000-0000-0000-0000000000a1"
ALICE, BOB, CAROL, DAVE, MALLORY = (new_user() for _ in range(5))


@pytest.fixture(scope="module")
def layout(db):
    set_node_secret(SECRET, [PORT, *CITUS_WORKERS])
    with connect(db) as c:
        apply(c, DROP_POLICIES, DROP_WORKER_POLICIES, DISTRIBUTE, RULE_ON_ROWS)
        # a shard's NOTIFY cannot be part of a transaction Citus commits in two phases (docs/scaling.md)
        c.execute(f"ALTER DATABASE {db} SET memory.notify_messages = off")
    yield db
    set_node_secret(None, [PORT, *CITUS_WORKERS])


def call(db, user, query, *args):
    """One call as `user`, in its own transaction with the caller passed; all its rows."""
    with as_guc_user(db, user) as c:
        return call_passing_the_caller(c, query, *args)


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
    one(layout, DAVE, "SELECT memory.accept_transfer(%s)", cid)
    assert one(layout, DAVE, "SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", cid) == 1
    (owner, readers, editors), = rule_on_messages(layout, cid)
    assert str(owner) == DAVE
    assert summaries_of(layout, cid) == [(DAVE, [ALICE], [ALICE], "a gift")]
    # the former owner stays on as an editor (accept_transfer), and the rows say so
    assert ([str(r) for r in readers], [str(e) for e in editors]) == ([ALICE], [ALICE])
    assert one(layout, ALICE, "SELECT (memory.add_message(%s, 'user', 'and I still write')).seq", cid) == 2
