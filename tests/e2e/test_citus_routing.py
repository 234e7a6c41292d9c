"""memory_ext's calls on tables Citus has distributed by conversation (Citus stage only).

The conversation's tables are distributed and co-located by the layout's first step
(sql/citus/route_by_conversation.sql), which leaves them with no policy, and every call is made by
the superuser; a one-node database next to it gets the same conversation. Appends on
the workers' shards keep the counters exact, and build_context and search_messages — fanned out
to the shards and assembled on the coordinator — answer exactly what one node answers."""
import pytest

from support.citus_layout import DROP_POLICIES, ROUTE_BY_CONVERSATION, apply
from support.pg import CITUS_WORKERS, connect, search

pytestmark = pytest.mark.skipif(not CITUS_WORKERS, reason="runs in the Citus stage, on its two workers")

USER = "00000000-0000-0000-0000-0000000000c1"
AGENT = "00000000-0000-0000-0000-0000000000a1"
CONVERSATIONS = 16  # spread by random ids: all on one of two workers once in 30,000 runs
MESSAGES = 40  # per conversation: 30 appended one by one, 10 in one INSERT … SELECT


@pytest.fixture(scope="module")
def one_node(db):
    """A database on the same server without Citus: memory_ext's tables are ordinary ones."""
    name = db + "_one_node"
    with connect("postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    with connect(name) as c:
        c.execute("CREATE EXTENSION memory_ext CASCADE")
        apply(c, DROP_POLICIES)
    yield name
    with connect("postgres") as c:
        c.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def distributed(db):
    with connect(db) as c:
        apply(c, ROUTE_BY_CONVERSATION)
        # (citus_shards leaves out the tables of an extension: the catalog itself)
        nodes = c.execute("""SELECT count(DISTINCT p.groupid) FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
                              WHERE s.logicalrelid = 'memory.conversation_messages'::regclass""").fetchone()[0]
        assert nodes == len(CITUS_WORKERS)
    return db


def fill(name):
    """The same conversations on either database; returns their ids in creation order."""
    with connect(name) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (USER,))
        ids = []
        for n in range(CONVERSATIONS):
            cid = c.execute("SELECT (memory.create_conversation(%s, %s)).id", (AGENT, f"talk {n}")).fetchone()[0]
            for i in range(1, 31):
                role = "user" if i % 2 else "assistant"
                c.execute("SELECT memory.add_message(%s, %s, %s)", (cid, role, f"talk {n} line {i} about topic{i % 7}"))
            c.execute("""INSERT INTO memory.conversation_messages (conversation_id, role, content)
                         SELECT %s, CASE WHEN g %% 2 = 1 THEN 'user' ELSE 'assistant' END, 'bulk line ' || g || ' about topic' || (g %% 7)
                           FROM generate_series(31, 40) g""", (cid,))
            ids.append(cid)
    return ids


@pytest.fixture(scope="module")
def both(one_node, distributed):
    return {"one": (one_node, fill(one_node)), "citus": (distributed, fill(distributed))}


def test_the_conversations_spread_over_both_workers(both):
    name, ids = both["citus"]
    with connect(name) as c:
        placed = c.execute("""SELECT count(DISTINCT p.groupid) FROM unnest(%s::uuid[]) AS id
                                  JOIN pg_dist_placement p
                                    ON p.shardid = get_shard_id_for_distribution_column('memory.conversations', id)""",
                           (ids,)).fetchone()[0]
    assert placed == len(CITUS_WORKERS)


def test_appends_on_the_shards_keep_the_counters_exact(both):
    name, ids = both["citus"]
    with connect(name) as c:
        for cid in ids:
            counters = c.execute("SELECT message_count, last_seq, total_tokens FROM memory.conversations WHERE id = %s",
                                 (cid,)).fetchone()
            actual = c.execute("""SELECT count(*), max(seq), sum(token_count), array_agg(seq ORDER BY seq)
                                    FROM memory.conversation_messages WHERE conversation_id = %s""", (cid,)).fetchone()
            assert counters == actual[:3]
            assert actual[3] == list(range(1, MESSAGES + 1))


def window(name, cid, max_tokens):
    with connect(name) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (USER,))
        return c.execute("SELECT memory.build_context(%s, %s, 'be brief')", (cid, max_tokens)).fetchone()[0]


@pytest.mark.parametrize("max_tokens", [60, 300, 100000])
def test_build_context_answers_as_one_node_does(both, max_tokens):
    (one, one_ids), (citus, citus_ids) = both["one"], both["citus"]
    for a, b in zip(one_ids, citus_ids):
        expected, got = window(one, a, max_tokens), window(citus, b, max_tokens)
        assert got == expected
    assert len(window(citus, citus_ids[0], 100000)["messages"]) == MESSAGES + 1  # the system prompt and all


def comparable(page):
    """A page without what differs between two databases (ids, times)."""
    return [(r["title"], r["seq"], r["role"], r["snippet"], r["rank"]) for r in page["results"]]


def all_pages(name, query, limit):
    with connect(name) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (USER,))
        pages, cursor = [], None
        while True:
            page = search(c, query, limit=limit, cursor=cursor)
            pages.append(page)
            cursor = page["next_cursor"]
            if cursor is None:
                return pages


@pytest.mark.parametrize("query", ["topic3", "line 7", "bulk topic5", "nothing-like-this"])
def test_search_answers_as_one_node_does_page_by_page(both, query):
    one, citus = both["one"][0], both["citus"][0]
    expected, got = all_pages(one, query, 4), all_pages(citus, query, 4)
    # equal ranks are ordered by message id, which differs between the databases: the same pages
    # in size, the same hits in all, each once, best first
    assert [len(p["results"]) for p in got] == [len(p["results"]) for p in expected]
    hits_got = [hit for p in got for hit in comparable(p)]
    assert sorted(hits_got) == sorted(hit for p in expected for hit in comparable(p))
    assert len(set(hits_got)) == len(hits_got)
    assert [h[4] for h in hits_got] == sorted((h[4] for h in hits_got), reverse=True)
    with connect(one) as c:
        hits = c.execute("SELECT count(*) FROM memory.conversation_messages WHERE search_vector @@ websearch_to_tsquery('simple', %s)",
                         (query,)).fetchone()[0]
    assert sum(len(p["results"]) for p in got) == hits
    if query == "topic3":
        assert hits > 4 and all("**topic3**" in r["snippet"] for p in got for r in p["results"])


def test_a_search_for_one_conversation_routes_to_its_shard(both):
    name, ids = both["citus"]
    with connect(name) as c:
        c.execute("SELECT set_config('memory.user_id', %s, false)", (USER,))
        page = search(c, "topic2", conversation_id=ids[2], limit=100)
    assert {r["conversation_id"] for r in page["results"]} == {str(ids[2])}
    assert sorted(r["seq"] for r in page["results"]) == [i for i in range(1, MESSAGES + 1) if i % 7 == 2]


def test_the_one_node_database_is_not_distributed(both):
    """The comparison means something: one side is Citus, the other is not."""
    with connect(both["one"][0]) as c:
        assert c.execute("SELECT count(*) FROM pg_extension WHERE extname = 'citus'").fetchone()[0] == 0
    with connect(both["citus"][0]) as c:
        assert c.execute("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'memory.conversation_messages'::regclass"
                         ).fetchone()[0] == 1
