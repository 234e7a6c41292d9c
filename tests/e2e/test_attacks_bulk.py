"""The bulk routes as an attacker with an ordinary login takes them: memory._import_messages called
directly (it must be as safe as import_conversation: the 100,000-message cap, the per-minute
limit, the conversation's state), and import and fork counted against the per-minute limit like
add_message (in 0.2.0 a direct call stored 150,000 messages in one call and 2,000 while over the
limit, and forks were not counted)."""
import contextlib
import json

import psycopg
import pytest
from psycopg import errors

from support.pg import as_guc_user, as_jwt_user, connect, new_user, rpc

AGENT = "a0000000-0000-0000-0000-0000000b01c0"
MODES = pytest.mark.parametrize("mode", [as_guc_user, as_jwt_user], ids=["login", "postgrest"])


@pytest.fixture(scope="module")
def limited(db):
    """The module's database with memory.max_messages_per_minute = 5 for every new session."""
    with connect(db) as c:
        c.execute(f"ALTER DATABASE {db} SET memory.max_messages_per_minute = 5")
    yield db
    with connect(db) as c:
        c.execute(f"ALTER DATABASE {db} RESET memory.max_messages_per_minute")


@contextlib.contextmanager
def over_the_limit():
    with pytest.raises(psycopg.Error) as e:
        yield
    assert e.value.sqlstate == "PT429", e.value


def messages(n):
    return json.dumps([{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(n)])


def stored(db, cid):
    with connect(db) as c:
        return c.execute("SELECT count(*) FROM memory.conversation_messages WHERE conversation_id = %s", (cid,)).fetchone()[0]


@MODES
def test_a_direct_call_of_the_import_helper_keeps_the_cap(db, mode):
    with mode(db, new_user()) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
        with pytest.raises(errors.ProgramLimitExceeded):
            c.execute("SELECT memory._import_messages(%s, %s)", (cid, messages(100_001)))
    assert stored(db, cid) == 0


@MODES
def test_a_direct_call_of_the_import_helper_refuses_an_archived_conversation(db, mode):
    with mode(db, new_user()) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
        c.execute("SELECT memory.archive_conversation(%s)", (cid,))
        with pytest.raises(errors.InsufficientPrivilege):
            c.execute("SELECT memory._import_messages(%s, %s)", (cid, messages(3)))
    assert stored(db, cid) == 0


@MODES
def test_every_bulk_route_counts_against_the_per_minute_limit(limited, mode):
    user = new_user()
    with mode(limited, user) as c:
        cid = str(rpc(c, "SELECT (memory.create_conversation(%s)).id", AGENT))
        # 6 messages at once are over a limit of 5, by any route
        with over_the_limit():
            c.execute("SELECT memory._import_messages(%s, %s)", (cid, messages(6)))
    assert stored(limited, cid) == 0
    with mode(limited, user) as c:
        with over_the_limit():
            c.execute("SELECT memory.import_conversation(%s)", (messages(6),))
    with mode(limited, user) as c:
        # 4 fit; a fork of them makes 8 in the minute
        source = rpc(c, "SELECT memory.import_conversation(%s)", messages(4))
    assert stored(limited, source) == 4
    with mode(limited, user) as c:
        with over_the_limit():
            c.execute("SELECT memory.fork_conversation(%s)", (source,))
    with connect(limited) as c:
        assert c.execute("SELECT count(*) FROM memory.conversations WHERE user_id = %s AND metadata ? 'forked_from'",
                         (user,)).fetchone()[0] == 0
