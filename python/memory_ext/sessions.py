"""How the adapters map a framework's session id (LangChain) or key (LlamaIndex) to one
memory_ext conversation:

- a key that is a UUID is the conversation's id;
- any other key is looked up among the caller's own conversations (the one whose metadata has
  `{"session_key": key}`); the first write of a new key creates it, with a random id, while
  holding a transaction-level advisory lock on (user, key), so concurrent first writers end up in
  one conversation. Nothing about the id can be guessed from the user and the key, so no other
  user can take a key's conversation first; reads of a key never written see nothing;
- the conversation is created with the adapter's agent id (default DEFAULT_AGENT_ID) and the
  session key in its metadata (how `get_keys` lists them);
- an id that belongs to another user is never read or written: reads see nothing, writes raise
  ConflictError.
"""
from __future__ import annotations

import uuid
from typing import Any, Mapping, Optional

from . import calls
from .calls import Call

DEFAULT_AGENT_ID = uuid.UUID(int=0)


def key_as_id(key: str) -> Optional[uuid.UUID]:
    """The conversation id a key names directly (a UUID key), else None."""
    if not isinstance(key, str) or not key:
        raise ValueError("a session id / key must be a non-empty string")
    try:
        return uuid.UUID(key)
    except ValueError:
        return None


def find_conversation(key: str) -> Call:
    """The caller's conversation of a session key, or None (the caller's own rows only: RLS and
    the user filter both say so)."""
    return calls.statement(
        """SELECT id FROM memory.conversations
            WHERE user_id = memory.current_user_id() AND metadata->>'session_key' = %(key)s
            ORDER BY created_at, id LIMIT 1""",
        lambda rows: rows[0]["id"] if rows else None, key=key)


class Sessions:
    """Keys to conversations for one adapter: the agent id and metadata new conversations get."""

    def __init__(self, agent_id: Any = None, title: Optional[str] = None, metadata: Optional[Mapping[str, Any]] = None):
        self.agent_id = calls.as_uuid(agent_id, "agent_id") if agent_id is not None else DEFAULT_AGENT_ID
        self.title = title
        self.metadata = dict(metadata or {})

    def open(self, key: str) -> Call:
        """The id of the caller's conversation of `key`, created if it does not exist yet. The
        advisory lock (held to the end of the transaction) makes concurrent first writers of a
        key wait for each other; the look-up after it sees the conversation a waiter committed."""
        lock = calls.statement(
            "SELECT pg_advisory_xact_lock(hashtextextended('memory_ext session ' || "
            "coalesce(memory.current_user_id()::text, '') || ' ' || %(key)s, 0))", lambda rows: None, key=key)
        found_or_made = calls.statement(
            """WITH found AS (SELECT c.id FROM memory.conversations c
                               WHERE c.user_id = memory.current_user_id() AND c.metadata->>'session_key' = %(key)s
                               ORDER BY c.created_at, c.id LIMIT 1),
                    made AS (INSERT INTO memory.conversations (agent_id, title, metadata)
                             SELECT %(agent_id)s, %(title)s, %(metadata)s WHERE NOT EXISTS (SELECT 1 FROM found)
                             RETURNING id)
               SELECT id FROM found UNION ALL SELECT id FROM made""",
            lambda rows: rows[0]["id"], key=key, agent_id=self.agent_id, title=self.title,
            metadata={**self.metadata, "session_key": key})
        return Call(found_or_made.query, found_or_made.params, found_or_made.decode, [(lock.query, lock.params)])

    def ensure(self, key: str, cid: uuid.UUID) -> Call:
        return calls.ensure_conversation(cid, self.agent_id, self.title, {**self.metadata, "session_key": key})


def session_keys() -> Call:
    """The keys of the caller's adapter conversations, oldest first."""
    return calls.statement(
        """SELECT metadata->>'session_key' AS key FROM memory.conversations
            WHERE user_id = memory.current_user_id() AND metadata ? 'session_key'
            ORDER BY created_at, id""", lambda rows: [r["key"] for r in rows])
