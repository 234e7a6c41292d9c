"""memory_ext's distributed layout (sql/citus/, docs/scaling.md) as the Citus stage's tests and
bench/citus_core.py apply it: the same two scripts scripts/distribute.sh runs, in one transaction.

- ROUTE_BY_CONVERSATION alone: the conversation's tables distributed and co-located with no policy
  (the routing alone, for the superuser's routing tests and the bench).
- RULE_ON_ROWS after it: the authorization rule carried by the rows; the whole layout.
- DROP_POLICIES: on one node without Citus, the same tables with no policy, to compare the routing
  with one server's plain tables."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from sql_statements import code, statements  # noqa: E402


def _script(name):
    with open(os.path.join(ROOT, "sql", "citus", name)) as f:
        return f.read()


ROUTE_BY_CONVERSATION = _script("route_by_conversation.sql")
RULE_ON_ROWS = _script("rule_on_rows.sql")

# what the layout distributes (the other tables stay on the coordinator with their policies), and
# which of those tables' rows carry their conversation's rule (owner, readers, editors)
DISTRIBUTED = ("conversations", "conversation_messages", "conversation_members", "conversation_summaries",
               "message_days_rollup", "message_days_marks", "share_links", "conversation_transfers", "fact_progress")
CARRY_THE_RULE = ("conversation_messages", "conversation_summaries", "message_days_rollup", "message_days_marks",
                  "share_links")

DROP_POLICIES = """
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT policyname, tablename FROM pg_policies
            WHERE schemaname = 'memory' AND tablename IN (""" + ", ".join(f"'{t}'" for t in DISTRIBUTED) + """) LOOP
    EXECUTE format('DROP POLICY %I ON memory.%I', r.policyname, r.tablename);
  END LOOP;
END $$;
"""


def apply(c, *scripts):
    """Runs the scripts on connection `c` in one transaction, statement by statement as psql -f
    does: Citus forwards a DDL statement to the workers with the text of the query that held it,
    and a worker refuses several statements in one."""
    with c.transaction():
        for script in scripts:
            for statement in statements(script):
                if code(statement).strip():
                    c.execute(statement)


# the coordinator's tables that keep rows about a conversation with no foreign key into it on the
# layout (memory._forget_conversations removes them), with none left
NOTHING_LEFT = {"jobs": 0, "branch_messages": 0, "message_embeddings": 0, "facts": 0}


def hang_on_the_coordinator(su, cid, user):
    """Gives conversation `cid` one row in each of those tables, as superuser connection `su`:
    `user`'s job, a stored branch message, a message's vector, `user`'s fact learnt from it."""
    su.execute("INSERT INTO memory.jobs (kind, conversation_id, user_id, status) VALUES ('summary', %s, %s, 'done')",
               (cid, user))
    su.execute("INSERT INTO memory.branch_messages (id, conversation_id, seq, message) VALUES (gen_random_uuid(), %s, 9, '{}')",
               (cid,))
    su.execute("""INSERT INTO memory.message_embeddings (message_id, conversation_id, model, embedding)
                  SELECT m.id, m.conversation_id, 'm', '[1,2,3]' FROM memory.conversation_messages m
                   WHERE m.conversation_id = %s LIMIT 1""", (cid,))
    su.execute("INSERT INTO memory.facts (user_id, conversation_id, content) VALUES (%s, %s, 'likes rivers')", (user, cid))
    assert left_on_the_coordinator(su, cid) == {t: 1 for t in NOTHING_LEFT}


def left_on_the_coordinator(su, cid):
    """How many rows about `cid` each of those tables holds."""
    return {t: su.execute(f"SELECT count(*) FROM memory.{t} WHERE conversation_id = %s", (cid,)).fetchone()[0]
            for t in NOTHING_LEFT}
