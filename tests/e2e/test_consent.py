"""Consent and authorship, as an attacker with an ordinary login (or a PostgREST user) would try
them: a conversation pushed into someone's list by a transfer, share bombs, forged authors.

- A transfer is an offer: until its recipient accepts, nothing of the conversation is the
  recipient's (list, search, usage, the conversations table); the recipient sees the offer with
  who else reads and writes, and declines or accepts it.
- Shares beyond memory.max_unrequested_shares from one owner are offers that give nothing; the
  recipient leaves everything from one user at once; search and listing keep working for a user
  with tens of thousands of readable conversations.
- Every message has the author that appended it (never a value the caller supplies), and usage
  analytics count it for that author."""
import pytest
from psycopg import errors

from support.pg import as_guc_user, as_jwt_user, connect, new_user, rpc

AGENT = "a0000000-0000-0000-0000-0000000c0a5e"
MODES = pytest.mark.parametrize("mode", [as_guc_user, as_jwt_user], ids=["login", "postgrest"])


DB = "e2e_" + __name__.split(".")[-1]  # the database the `db` fixture makes for this module


@pytest.fixture(autouse=True)
def _db(db):
    assert db == DB


def conversation(owner, title, text):
    with as_guc_user(DB, owner) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s, %s)).id", AGENT, title))
        c.execute("SELECT memory.add_message(%s, 'user', %s)", (cid, text))
    return cid


def seen_by(mode, user):
    """What a user sees of memory_ext's data: its list, its search for 'password', its usage rows,
    the conversations table."""
    with mode(DB, user) as c:
        return {
            "list": [str(r[0]) for r in c.execute("SELECT id FROM memory.list_conversations()")],
            "search": [h["conversation_id"] for h in rpc(c, "SELECT memory.search_messages('password')")["results"]],
            "usage": rpc(c, "SELECT count(*) FROM memory.usage_daily"),
            "table": [str(r[0]) for r in c.execute("SELECT id FROM memory.conversations")],
        }


@MODES
def test_a_transfer_is_an_offer_until_the_recipient_accepts(mode):
    attacker, victim = new_user(), new_user()
    phish = conversation(attacker, "Support: confirm your password", "Support here: please reply with your password")
    nothing = {"list": [], "search": [], "usage": 0, "table": []}
    assert seen_by(mode, victim) == nothing
    with mode(DB, attacker) as c:
        row = c.execute("SELECT user_id FROM memory.transfer_conversation(%s, %s)", (phish, victim)).fetchone()
        assert str(row[0]) == attacker
    # 0.2.0 made it the victim's at once; now nothing of it is the victim's
    assert seen_by(mode, victim) == nothing
    with mode(DB, victim) as c:
        assert c.execute("SELECT memory.can_read(%s)", (phish,)).fetchone() == (False,)
        with pytest.raises(errors.NoDataFound):
            c.execute("SELECT memory.get_messages(%s)", (phish,))
    # the victim sees the offer, with who else can read and write, and declines it
    with mode(DB, victim) as c:
        offers = c.execute("SELECT conversation_id, from_user_id, title, members FROM memory.list_transfer_offers()").fetchall()
        assert [(str(o[0]), str(o[1]), o[2], o[3]) for o in offers] == [(phish, attacker, "Support: confirm your password", [])]
        assert c.execute("SELECT memory.decline_transfer(%s)", (phish,)).fetchone() == (True,)
    with mode(DB, victim) as c:
        assert c.execute("SELECT count(*) FROM memory.list_transfer_offers()").fetchone() == (0,)
        with pytest.raises(errors.NoDataFound):
            c.execute("SELECT memory.accept_transfer(%s)", (phish,))
    with mode(DB, attacker) as c:
        assert c.execute("SELECT user_id FROM memory.conversations WHERE id = %s", (phish,)).fetchone()[0] is not None
        assert str(rpc(c, "SELECT user_id FROM memory.conversations WHERE id = %s", phish)) == attacker


def test_offers_to_invented_users_change_nothing_and_are_capped():
    """Transfers to random uuids no longer create owners (whom the queue's fairness favoured);
    an owner has at most 100 open offers; the owner withdraws one with decline_transfer."""
    sender = new_user()
    cids = []
    with as_guc_user(DB, sender) as c:
        for i in range(101):
            cids.append(str(rpc(c, "SELECT (memory.create_conversation(%s, %s)).id", AGENT, f"c{i}")))
        for cid in cids[:100]:
            c.execute("SELECT memory.transfer_conversation(%s, %s)", (cid, new_user()))
        with pytest.raises(errors.ProgramLimitExceeded):
            c.execute("SELECT memory.transfer_conversation(%s, %s)", (cids[100], new_user()))
        # offering one again to someone else replaces its offer (still 100)
        c.execute("SELECT memory.transfer_conversation(%s, %s)", (cids[0], new_user()))
        assert c.execute("SELECT count(*) FROM memory.list_transfer_offers()").fetchone() == (100,)
        assert c.execute("SELECT memory.decline_transfer(%s)", (cids[0],)).fetchone() == (True,)
        assert c.execute("SELECT count(*) FROM memory.list_conversations(\"limit\" => 1000)").fetchone() == (101,)
    with connect(DB) as su:
        owners = su.execute("SELECT DISTINCT user_id FROM memory.conversations WHERE id = ANY(%s::uuid[])", (cids,)).fetchall()
        assert [str(o[0]) for o in owners] == [sender]


def test_an_offer_is_void_once_its_sender_no_longer_owns_the_conversation():
    owner, first, second = new_user(), new_user(), new_user()
    cid = conversation(owner, "t", "hello")
    with as_guc_user(DB, owner) as c:
        c.execute("SELECT memory.transfer_conversation(%s, %s)", (cid, first))
    with as_guc_user(DB, first) as c:
        c.execute("SELECT memory.accept_transfer(%s)", (cid,))
    # the old owner, now an editor, cannot offer it again
    with as_guc_user(DB, owner) as c:
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("SELECT memory.transfer_conversation(%s, %s)", (cid, second))
    with as_guc_user(DB, second) as c:
        with pytest.raises(errors.NoDataFound):
            c.execute("SELECT memory.accept_transfer(%s)", (cid,))


def share_many(owner, member, n, role="viewer"):
    """n conversations of owner, each with one message, shared with member (in one session)."""
    cids = []
    with as_guc_user(DB, owner) as c:
        for i in range(n):
            cid = str(rpc(c, "SELECT (memory.create_conversation(%s, %s)).id", AGENT, f"bomb {i}"))
            c.execute("SELECT memory.add_message(%s, 'user', 'password reset needed')", (cid,))
            c.execute("SELECT memory.share_conversation(%s, %s, %s)", (cid, member, role))
            cids.append(cid)
    return cids


@MODES
def test_shares_beyond_the_cap_wait_and_a_user_declines_all_of_one_sharer(mode):
    bomber, victim, friend = new_user(), new_user(), new_user()
    bombs = share_many(bomber, victim, 25)
    welcome = share_many(friend, victim, 2)
    with mode(DB, victim) as c:
        # the first 10 (memory.max_unrequested_shares) took effect, the other 15 are offers
        listed = [str(r[0]) for r in c.execute("SELECT id FROM memory.list_conversations(\"limit\" => 1000)")]
        assert set(listed) == set(bombs[:10]) | set(welcome)
        assert rpc(c, "SELECT count(*) FROM memory.conversations") == 12
        hits = {h["conversation_id"] for h in rpc(c, "SELECT memory.search_messages('password', \"limit\" => 100)")["results"]}
        assert hits == set(bombs[:10]) | set(welcome)
        offers = c.execute("SELECT from_user_id, offers FROM memory.list_share_offers()").fetchall()
        assert [(str(o[0]), o[1]) for o in offers] == [(bomber, 15)]
    for pending in bombs[10:12]:
        with mode(DB, victim) as c:
            with pytest.raises(errors.NoDataFound):
                c.execute("SELECT memory.build_context(%s)", (pending,))
    with mode(DB, victim) as c:
        # one offer accepted
        assert rpc(c, "SELECT memory.accept_shares(conversation_id => %s)", bombs[20]) == 1
    with mode(DB, victim) as c:
        assert rpc(c, "SELECT count(*) FROM memory.conversations") == 13
    with mode(DB, victim) as c:
        with pytest.raises(errors.InvalidParameterValue):
            c.execute("SELECT memory.accept_shares()")
    with mode(DB, victim) as c:
        # everything from the bomber, accepted or not, gone at once; the friend's stay
        assert rpc(c, "SELECT memory.decline_shares(%s)", bomber) == 25
    with mode(DB, victim) as c:
        listed = {str(r[0]) for r in c.execute("SELECT id FROM memory.list_conversations()")}
        assert listed == set(welcome)
        assert c.execute("SELECT count(*) FROM memory.list_share_offers()").fetchone() == (0,)
    with as_guc_user(DB, bomber) as c:
        # the bomber cannot accept on the victim's behalf, nor decline for it
        assert rpc(c, "SELECT memory.accept_shares(%s)", victim) == 0


def test_the_cap_is_the_operators_setting():
    owner, member = new_user(), new_user()
    with as_guc_user(DB, owner) as c:
        # only a superuser sets it
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("SET memory.max_unrequested_shares = 100000")
    with connect(DB) as su:
        su.execute(f"ALTER DATABASE {DB} SET memory.max_unrequested_shares = 0")
    try:
        cid = share_many(owner, member, 1)[0]
        with as_guc_user(DB, member) as c:
            assert c.execute("SELECT memory.can_read(%s)", (cid,)).fetchone() == (False,)
            assert rpc(c, "SELECT memory.accept_shares(%s)", owner) == 1
            assert c.execute("SELECT memory.can_read(%s)", (cid,)).fetchone() == (True,)
            # sharing again (a new role) keeps the acceptance
        with as_guc_user(DB, owner) as c:
            c.execute("SELECT memory.share_conversation(%s, %s, 'editor')", (cid, member))
        with as_guc_user(DB, member) as c:
            assert c.execute("SELECT memory.can_write(%s)", (cid,)).fetchone() == (True,)
    finally:
        with connect(DB) as su:
            su.execute(f"ALTER DATABASE {DB} RESET memory.max_unrequested_shares")


def test_search_and_listing_work_for_a_user_with_thousands_of_readable_conversations():
    """0.2.0 built one text-search query naming every readable conversation: 20,000 shared ones
    failed with "stack depth limit exceeded", 30,000 own ones with "value is too big in tsquery"
    (echoing hundreds of kB of the scope), and listing 20,000 shared ones took seconds. The
    conversations are made in bulk here (as the superuser) so that the test stays short."""
    many, sharer, reader = new_user(), new_user(), new_user()
    with connect(DB) as su:
        su.execute("""INSERT INTO memory.conversations (agent_id, user_id, title)
                      SELECT %s, %s, 'own ' || g FROM generate_series(1, 30000) g""", (AGENT, many))
        su.execute("""INSERT INTO memory.conversations (agent_id, user_id, title)
                      SELECT %s, %s, 'shared ' || g FROM generate_series(1, 20000) g""", (AGENT, sharer))
        su.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content)
                      SELECT id, 'user', 'invoice number ' || title FROM memory.conversations WHERE user_id IN (%s, %s)""",
                   (many, sharer))
        # accepted shares, as if the reader had accepted every offer
        su.execute("""INSERT INTO memory.conversation_members (conversation_id, user_id, role, owner_id, accepted_at)
                      SELECT id, %s, 'viewer', user_id, now() FROM memory.conversations WHERE user_id = %s""",
                   (reader, sharer))
        su.execute("ANALYZE memory.conversations")
        su.execute("ANALYZE memory.conversation_members")
    for user, expect in ((many, "own"), (reader, "shared")):
        with as_guc_user(DB, user) as c:
            page = rpc(c, "SELECT memory.search_messages('invoice', \"limit\" => 50)")
            assert len(page["results"]) == 50 and page["next_cursor"]
            assert all(h["title"].startswith(expect) for h in page["results"])
            second = rpc(c, "SELECT memory.search_messages('invoice', \"limit\" => 50, cursor => %s)", page["next_cursor"])
            assert not {h["message_id"] for h in second["results"]} & {h["message_id"] for h in page["results"]}
            one = page["results"][0]["conversation_id"]
            hits = rpc(c, "SELECT memory.search_messages('invoice', conversation_id => %s)", one)["results"]
            assert [h["conversation_id"] for h in hits] == [one]
            assert len(rpc(c, "SELECT memory.search_messages('invoice', agent_id => %s)", AGENT)["results"]) == 20
            rows = c.execute("SELECT title, access FROM memory.list_conversations(\"limit\" => 100)").fetchall()
            assert len(rows) == 100 and all(t.startswith(expect) for t, _ in rows)
            assert {a for _, a in rows} == {"owner" if expect == "own" else "viewer"}


@MODES
def test_messages_have_their_authors_and_usage_counts_them_for_their_author(mode):
    owner, editor = new_user(), new_user()
    cid = conversation(owner, "t", "owner writes")
    with as_guc_user(DB, owner) as c:
        c.execute("SELECT memory.share_conversation(%s, %s, 'editor')", (cid, editor))
    with mode(DB, editor) as c:
        c.execute("SELECT memory.add_message(%s, 'user', 'editor writes')", (cid,))
        # a forged author is replaced by the caller's identity
        c.execute("INSERT INTO memory.conversation_messages (conversation_id, role, content, author_id)"
                  " VALUES (%s, 'user', 'forged', %s)", (cid, owner))
    with mode(DB, owner) as c:
        rows = c.execute("SELECT content, author_id FROM memory.conversation_messages WHERE conversation_id = %s ORDER BY seq",
                         (cid,)).fetchall()
        assert [(r[0], str(r[1])) for r in rows] == [("owner writes", owner), ("editor writes", editor), ("forged", editor)]
    with mode(DB, owner) as c:
        with pytest.raises(errors.FeatureNotSupported):
            c.execute("UPDATE memory.conversation_messages SET author_id = %s WHERE conversation_id = %s", (owner, cid))
    with connect(DB) as su:
        usage = dict(su.execute("SELECT user_id::text, messages FROM memory.usage_daily WHERE user_id IN (%s, %s)",
                                (owner, editor)).fetchall())
        assert usage == {owner: 1, editor: 2}


def test_a_failed_accept_takes_no_lock_on_the_conversation():
    """An attacker who calls accept_transfer on someone's conversation (no offer to it) and leaves
    its transaction open, aborted, must not hold the conversation's row lock: the owner's appends
    go on."""
    owner, attacker = new_user(), new_user()
    cid = conversation(owner, "t", "hello")
    bad = connect(DB, "app")
    try:
        bad.autocommit = False
        bad.execute("SELECT set_config('memory.user_id', %s, false)", (attacker,))
        with pytest.raises(errors.NoDataFound):
            bad.execute("SELECT memory.accept_transfer(%s)", (cid,))
        with as_guc_user(DB, owner) as c:
            c.execute("SET statement_timeout = '5s'")
            c.execute("SELECT memory.add_message(%s, 'user', 'not blocked')", (cid,))
            assert rpc(c, "SELECT message_count FROM memory.conversations WHERE id = %s", cid) == 2
    finally:
        bad.rollback()
        bad.close()
