"""How the adapters map a framework's session id (LangChain) or key (LlamaIndex) to one
memory_ext conversation:

- a key that is a UUID is the conversation's id;
- any other key becomes `uuid5(KEY_NAMESPACE, "<user id>:<key>")`, so two users' "default" keys
  are two conversations;
- the conversation is created on first write, with the adapter's agent id (default
  DEFAULT_AGENT_ID), and `{"session_key": key}` in its metadata (how `get_keys` lists them);
- an id that belongs to another user is never read or written: reads see nothing, writes raise
  ConflictError.
"""
from __future__ import annotations

import uuid
from typing import Any, Mapping, Optional

from . import calls
from .calls import Call

KEY_NAMESPACE = uuid.UUID("8f6c1d2e-55a3-4c1b-9d0e-6d656d6f7279")
DEFAULT_AGENT_ID = uuid.UUID(int=0)


def known_user_id(client: Any) -> Optional[str]:
    """The caller's id when the client asserts it (user_id or the claims' sub), else None."""
    ident = client._identity
    if ident.user_id:
        return ident.user_id
    if ident.claims:
        import json
        return json.loads(ident.claims).get("sub")
    return None


def conversation_id(key: str, user_id: Any) -> uuid.UUID:
    if not isinstance(key, str) or not key:
        raise ValueError("a session id / key must be a non-empty string")
    try:
        return uuid.UUID(key)
    except ValueError:
        return uuid.uuid5(KEY_NAMESPACE, f"{user_id}:{key}")


def needs_user_id(key: str) -> bool:
    try:
        uuid.UUID(key)
        return False
    except ValueError:
        return True


class Sessions:
    """Keys to conversations for one adapter: the agent id and metadata new conversations get."""

    def __init__(self, agent_id: Any = None, title: Optional[str] = None, metadata: Optional[Mapping[str, Any]] = None):
        self.agent_id = calls.as_uuid(agent_id, "agent_id") if agent_id is not None else DEFAULT_AGENT_ID
        self.title = title
        self.metadata = dict(metadata or {})

    def ensure(self, key: str, cid: uuid.UUID) -> Call:
        return calls.ensure_conversation(cid, self.agent_id, self.title, {**self.metadata, "session_key": key})


def session_keys() -> Call:
    """The keys of the caller's adapter conversations, oldest first."""
    return calls.statement(
        """SELECT metadata->>'session_key' AS key FROM memory.conversations
            WHERE user_id = memory.current_user_id() AND metadata ? 'session_key'
            ORDER BY created_at, id""", lambda rows: [r["key"] for r in rows])
